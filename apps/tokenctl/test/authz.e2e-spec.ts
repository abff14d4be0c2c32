/**
 * The authorization model at the NATS level: a real nats-server runs the configuration `tokenctl authz`
 * generates, raw nats.js responders stand in for the refresher and the audit app (under
 * their own users), and each role is shown to do its job and be refused the rest by the
 * server itself. No refresher: what is proven here is the permission model, not the app.
 */
import {
  connect,
  nkeyAuthenticator,
  PermissionViolationError,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, JetStreamApiError } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { AUDIT_STREAM, AUDIT_SUBJECT_FILTER, DEFAULT_AUDIT_CONSUMER } from '@tokenkeeper/contracts';
import { permissionError, sleep, startNatsServer, type NatsServerHandle } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuthz, type AuthzFlags } from '../src/authz.command.js';
import { renderServerConfig, type GeneratedUser } from '../src/authz.render.js';

const FLAGS: AuthzFlags = {
  refresher: true,
  audit: true,
  operator: true,
  tenant: ['acme', 'globex'],
  consumer: ['globex:billing:github'],
};
/** How long a refusal may take to come back; nats-server answers -ERR at once, this is slack for a loaded machine. */
const REFUSAL_MS = 3_000;
/** How long we wait for a message that must not arrive. */
const SILENCE_MS = 400;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A connection as one generated user, with its own inbox prefix, recording the server's error reports. */
interface Client {
  nc: NatsConnection;
  user: GeneratedUser;
  errors: Error[];
}

async function connectAs(nats: NatsServerHandle, user: GeneratedUser): Promise<Client> {
  const auth =
    user.credential.kind === 'nkey'
      ? { authenticator: nkeyAuthenticator(encoder.encode(user.credential.seed)) }
      : { user: user.user.name, pass: user.credential.password };
  const nc = await connect({ servers: nats.url, inboxPrefix: user.user.inboxPrefix, name: user.user.name, ...auth });
  const errors: Error[] = [];
  void (async () => {
    for await (const status of nc.status()) if (status.type === 'error') errors.push(status.error);
  })();
  return { nc, user, errors };
}

/** A request the server refuses: the request rejects with a publish permission violation for that subject. */
async function expectRequestRefused(client: Client, subject: string): Promise<void> {
  const outcome = await client.nc.request(subject, encoder.encode('{}'), { timeout: REFUSAL_MS }).then(
    () => 'answered',
    (error: unknown) => error,
  );
  const violation = permissionError(outcome);
  expect(violation, `${client.user.user.name} → ${subject}: ${String(outcome)}`).toBeInstanceOf(
    PermissionViolationError,
  );
  expect(violation!.operation).toBe('publish');
  expect(violation!.subject).toBe(subject);
}

/** A subscription the server refuses: it closes with a subscription permission violation. */
async function expectSubscribeRefused(client: Client, subject: string, queue?: string): Promise<void> {
  const sub = client.nc.subscribe(subject, queue ? { queue } : {});
  const closed = await Promise.race([sub.closed, sleep(REFUSAL_MS).then(() => 'still open')]);
  expect(closed, `${client.user.user.name} subscribe ${subject}${queue ? ` queue ${queue}` : ''}`).toBeInstanceOf(
    PermissionViolationError,
  );
  expect((closed as PermissionViolationError).operation).toBe('subscription');
  expect((closed as PermissionViolationError).subject).toBe(subject);
  if (queue) expect((closed as PermissionViolationError).queue).toBe(queue);
}

/** A plain publish the server refuses: reported on the connection's status, as a violation for that subject. */
async function expectPublishRefused(client: Client, subject: string): Promise<void> {
  const before = client.errors.length;
  client.nc.publish(subject, encoder.encode('{"forged":true}'));
  await client.nc.flush();
  const deadline = Date.now() + REFUSAL_MS;
  const found = () =>
    client.errors
      .slice(before)
      .map(permissionError)
      .find((e) => e?.subject === subject);
  while (!found() && Date.now() < deadline) await sleep(20);
  expect(found(), `${client.user.user.name} publish ${subject}`).toBeInstanceOf(PermissionViolationError);
}

/** Messages a subscription receives within a short window. */
async function collect(sub: Subscription, ms = SILENCE_MS): Promise<string[]> {
  const got: string[] = [];
  void (async () => {
    for await (const m of sub) got.push(m.subject);
  })();
  await sleep(ms);
  return got;
}

async function answeredOk(client: Client, subject: string): Promise<{ ok: boolean; subject: string; as: string }> {
  const reply = await client.nc.request(subject, encoder.encode('{}'), { timeout: 5_000 });
  return JSON.parse(decoder.decode(reply.data)) as { ok: boolean; subject: string; as: string };
}

describe('tokenctl authz: the generated nats-server permissions', () => {
  let nats: NatsServerHandle;
  let users: Map<string, GeneratedUser>;
  const clients: Client[] = [];
  /** Reply subjects the stand-in refresher saw, by request subject. */
  const seenReplies = new Map<string, string>();
  let refresher: Client;
  let audit: Client;
  let consumerA: Client;
  let consumerB: Client;
  let billing: Client;
  let adminA: Client;
  let operator: Client;

  const as = async (name: string) => {
    const client = await connectAs(nats, users.get(name)!);
    clients.push(client);
    return client;
  };

  /** A responder as a service user: echoes which subject it answered and as whom. */
  function respond(client: Client, subject: string, queue: string) {
    const sub = client.nc.subscribe(subject, { queue });
    void (async () => {
      for await (const m of sub) {
        seenReplies.set(m.subject, m.reply ?? '');
        m.respond(encoder.encode(JSON.stringify({ ok: true, subject: m.subject, as: client.user.user.name })));
      }
    })();
    return sub;
  }

  beforeAll(async () => {
    const generated = buildAuthz(FLAGS);
    users = new Map(generated.users.map((u) => [u.user.name, u]));
    nats = await startNatsServer({ config: generated.config });
    refresher = await as('refresher');
    audit = await as('audit');
    for (const subject of [
      'token.get.*.*',
      'tokenkeeper.admin.describe.*.*',
      'tokenkeeper.admin.register.*.*',
      'tokenkeeper.admin.list',
      'tokenkeeper.admin.list.*',
    ]) {
      respond(refresher, subject, 'refresher');
    }
    respond(audit, 'audit.query', 'audit');
    respond(audit, 'audit.query.*', 'audit');
    await refresher.nc.flush();
    await audit.nc.flush();
    consumerA = await as('svc-acme');
    consumerB = await as('svc-globex');
    billing = await as('svc-globex-billing');
    adminA = await as('admin-acme');
    operator = await as('operator');
  });

  afterAll(async () => {
    for (const c of clients) await c.nc.close().catch(() => undefined);
    await nats?.stop();
  });

  it('generates one user per role, each with its own inbox prefix and nobody with _INBOX.>', () => {
    expect([...users.keys()]).toEqual([
      'refresher',
      'audit',
      'operator',
      'admin-acme',
      'svc-acme',
      'admin-globex',
      'svc-globex',
      'svc-globex-billing',
    ]);
    for (const { user } of users.values()) {
      expect(user.inboxPrefix).toBe(`_INBOX_${user.name}`);
      expect(user.permissions.subscribe).not.toContain('_INBOX.>');
      expect(
        [...user.permissions.publish, ...user.permissions.subscribe].some(
          (s) => s.startsWith('$JS.API.>') || s === '>',
        ),
      ).toBe(false);
    }
  });

  it('a consumer of A gets A’s tokens, the reply coming to its own inbox', async () => {
    expect(await answeredOk(consumerA, 'token.get.acme.github')).toEqual({
      ok: true,
      subject: 'token.get.acme.github',
      as: 'refresher',
    });
    expect(seenReplies.get('token.get.acme.github')).toMatch(/^_INBOX_svc-acme\./);
  });

  it('a consumer of A is refused token.get of B by the server, and B’s responder never sees it', async () => {
    seenReplies.delete('token.get.globex.github');
    await expectRequestRefused(consumerA, 'token.get.globex.github');
    expect(seenReplies.has('token.get.globex.github')).toBe(false);
    // The connection survives a refusal: the next allowed request still works.
    expect((await answeredOk(consumerA, 'token.get.acme.slack')).ok).toBe(true);
  });

  it('a consumer of A receives A’s events and cannot subscribe to B’s, to _INBOX.>, to another inbox or to the control plane', async () => {
    const own = consumerA.nc.subscribe('token.refreshed.acme.>');
    await consumerA.nc.flush();
    const received = collect(own);
    refresher.nc.publish('token.refreshed.acme.github', encoder.encode('{}'));
    refresher.nc.publish('token.refreshed.globex.github', encoder.encode('{}'));
    expect(await received).toEqual(['token.refreshed.acme.github']);
    own.unsubscribe();

    await expectSubscribeRefused(consumerA, 'token.refreshed.globex.>');
    await expectSubscribeRefused(consumerA, 'token.refreshed.>');
    await expectSubscribeRefused(consumerA, 'token.*.acme.>');
    await expectSubscribeRefused(consumerA, '_INBOX.>');
    await expectSubscribeRefused(consumerA, '_INBOX_svc-globex.>');
    await expectSubscribeRefused(consumerA, '_INBOX_refresher.>');
    await expectSubscribeRefused(consumerA, 'tokenkeeper.admin.>');
    await expectSubscribeRefused(consumerA, '>');
  });

  it('a consumer of A cannot read another service’s replies even by guessing its inbox', async () => {
    // B's reply travels to B's inbox: A is refused by the server the exact reply subject of
    // one of B's requests (the best guess there is) and B's whole inbox.
    expect((await answeredOk(consumerB, 'token.get.globex.github')).ok).toBe(true);
    const replySubject = seenReplies.get('token.get.globex.github')!;
    expect(replySubject.startsWith(`${consumerB.user.user.inboxPrefix}.`), replySubject).toBe(true);
    await expectSubscribeRefused(consumerA, replySubject);
    await expectSubscribeRefused(consumerA, `${consumerB.user.user.inboxPrefix}.>`);
  });

  it('a consumer cannot forge events, answer token.get by joining the refresher’s queue group, or call the control plane', async () => {
    const watcher = refresher.nc.subscribe('token.refreshed.>');
    await refresher.nc.flush();
    const seen = collect(watcher, SILENCE_MS * 2);
    await expectPublishRefused(consumerA, 'token.refreshed.acme.github');
    await expectPublishRefused(consumerA, 'token.registered.acme.github');
    await expectPublishRefused(consumerA, 'audit.token.refreshed.acme.github');
    expect(await seen).toEqual([]);
    watcher.unsubscribe();

    await expectSubscribeRefused(consumerA, 'token.get.*.*', 'refresher');
    await expectSubscribeRefused(consumerA, 'token.get.acme.github');
    await expectRequestRefused(consumerA, 'tokenkeeper.admin.describe.acme.github');
    await expectRequestRefused(consumerA, 'tokenkeeper.admin.register.acme.github');
    await expectRequestRefused(consumerA, 'audit.query.acme');
    await expectRequestRefused(consumerA, '$JS.API.STREAM.INFO.TOKEN_AUDIT');
  });

  it('a consumer limited to some connections gets only those', async () => {
    expect((await answeredOk(billing, 'token.get.globex.github')).ok).toBe(true);
    await expectRequestRefused(billing, 'token.get.globex.slack');
    await expectRequestRefused(billing, 'token.get.acme.github');
    await expectSubscribeRefused(billing, 'token.refreshed.globex.slack');
    const own = billing.nc.subscribe('token.revoked.globex.github');
    const closed = await Promise.race([own.closed, sleep(SILENCE_MS).then(() => 'open')]);
    expect(closed).toBe('open');
    own.unsubscribe();
  });

  it('a tenant admin of A administers and audits A and nothing of B', async () => {
    expect((await answeredOk(adminA, 'tokenkeeper.admin.describe.acme.github')).ok).toBe(true);
    expect((await answeredOk(adminA, 'tokenkeeper.admin.register.acme.github')).ok).toBe(true);
    expect((await answeredOk(adminA, 'tokenkeeper.admin.list.acme')).ok).toBe(true);
    expect(await answeredOk(adminA, 'audit.query.acme')).toEqual({
      ok: true,
      subject: 'audit.query.acme',
      as: 'audit',
    });
    expect(seenReplies.get('tokenkeeper.admin.describe.acme.github')).toMatch(/^_INBOX_admin-acme\./);

    await expectRequestRefused(adminA, 'tokenkeeper.admin.describe.globex.github');
    await expectRequestRefused(adminA, 'tokenkeeper.admin.register.globex.github');
    await expectRequestRefused(adminA, 'tokenkeeper.admin.list.globex');
    await expectRequestRefused(adminA, 'tokenkeeper.admin.list');
    await expectRequestRefused(adminA, 'audit.query.globex');
    await expectRequestRefused(adminA, 'audit.query');
    await expectRequestRefused(adminA, 'token.get.acme.github');
    await expectSubscribeRefused(adminA, 'token.refreshed.acme.>');
    await expectSubscribeRefused(adminA, '_INBOX.>');
  });

  it('the operator administers every tenant, lists and audits across tenants, and watches events', async () => {
    for (const subject of [
      'tokenkeeper.admin.describe.acme.github',
      'tokenkeeper.admin.describe.globex.github',
      'tokenkeeper.admin.list',
      'tokenkeeper.admin.list.globex',
      'audit.query',
      'audit.query.globex',
      'token.get.globex.github',
    ]) {
      expect((await answeredOk(operator, subject)).ok, subject).toBe(true);
    }
    const watch = operator.nc.subscribe('token.failed.*.*');
    await operator.nc.flush();
    const got = collect(watch);
    refresher.nc.publish('token.failed.globex.github', encoder.encode('{}'));
    expect(await got).toEqual(['token.failed.globex.github']);
    watch.unsubscribe();
    await expectPublishRefused(operator, 'token.refreshed.acme.github');
    await expectSubscribeRefused(operator, 'token.get.*.*', 'refresher');
    await expectSubscribeRefused(operator, '_INBOX.>');
  });

  it('the services themselves stay in their lanes', async () => {
    // The audit app answers queries but cannot publish token events or touch the stream's config.
    await expectPublishRefused(audit, 'token.refreshed.acme.github');
    await expectRequestRefused(audit, '$JS.API.STREAM.UPDATE.TOKEN_AUDIT');
    await expectSubscribeRefused(audit, 'token.get.*.*', 'refresher');
    // The refresher cannot delete the stream or read the audit app's consumer.
    await expectRequestRefused(refresher, '$JS.API.STREAM.DELETE.TOKEN_AUDIT');
    await expectRequestRefused(refresher, '$JS.API.CONSUMER.MSG.NEXT.TOKEN_AUDIT.tokenkeeper-audit');
    await expectSubscribeRefused(refresher, '_INBOX.>');
  });
});

describe('tokenctl authz --nkeys: the same model with nkey users', () => {
  let nats: NatsServerHandle;
  const clients: Client[] = [];

  beforeAll(async () => {
    const generated = buildAuthz({ refresher: true, tenant: ['acme'], nkeys: true });
    expect(generated.config).not.toMatch(/"password"/);
    for (const { credential } of generated.users) {
      if (credential.kind === 'nkey') expect(generated.config).not.toContain(credential.seed.slice(0, 20));
    }
    nats = await startNatsServer({ config: generated.config });
    for (const user of generated.users) clients.push(await connectAs(nats, user));
  });

  afterAll(async () => {
    for (const c of clients) await c.nc.close().catch(() => undefined);
    await nats?.stop();
  });

  it('authenticates each user by its seed and applies its permissions', async () => {
    const [refresher, , consumer] = clients;
    expect(consumer!.user.user.name).toBe('svc-acme');
    const sub = refresher!.nc.subscribe('token.get.*.*', { queue: 'refresher' });
    void (async () => {
      for await (const m of sub) m.respond(encoder.encode('{"ok":true}'));
    })();
    await refresher!.nc.flush();
    const reply = await consumer!.nc.request('token.get.acme.github', encoder.encode('{}'), { timeout: 5_000 });
    expect(decoder.decode(reply.data)).toBe('{"ok":true}');
    await expectRequestRefused(consumer!, 'token.get.globex.github');
  });

  it('refuses a connection without a known key', async () => {
    const outcome = await connect({
      servers: nats.url,
      authenticator: nkeyAuthenticator(
        encoder.encode(new TextDecoder().decode((await import('@nats-io/nkeys')).createUser().getSeed())),
      ),
    }).then(
      async (nc) => {
        await nc.close();
        return 'connected';
      },
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(Error);
    expect(String(outcome)).toMatch(/authorization/i);
  });
});

describe('tokenctl authz on the command line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-authz-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a config a nats-server runs and a private secrets file, and a consumer connects with what it was given', async () => {
    const [conf, secrets] = [join(dir, 'auth.conf'), join(dir, 'tokenkeeper.secrets')];
    const run = spawnSync(
      process.execPath,
      [
        '--import',
        '@swc-node/register/esm-register',
        'apps/tokenctl/src/main.ts',
        'authz',
        '--refresher',
        '--tenant',
        'acme',
        '--nkeys',
        '--out',
        conf,
        '--secrets-file',
        secrets,
      ],
      {
        cwd: fileURLToPath(new URL('../../../', import.meta.url)),
        encoding: 'utf8',
        env: { ...process.env, NO_COLOR: '1' },
        timeout: 120_000,
      },
    );
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toBe('');
    expect(statSync(conf).mode & 0o777).toBe(0o600);
    expect(statSync(secrets).mode & 0o777).toBe(0o600);
    const text = readFileSync(secrets, 'utf8');
    const block = text.slice(text.indexOf('[svc-acme]'));
    const seed = /NATS_NKEY_SEED=(SU[A-Z2-7]+)/.exec(block)![1]!;
    const inboxPrefix = /NATS_INBOX_PREFIX=(\S+)/.exec(block)![1]!;
    expect(inboxPrefix).toBe('_INBOX_svc-acme');
    const nats = await startNatsServer({ config: readFileSync(conf, 'utf8') });
    try {
      const nc = await connect({
        servers: nats.url,
        authenticator: nkeyAuthenticator(encoder.encode(seed)),
        inboxPrefix,
      });
      const sub = nc.subscribe('token.refreshed.acme.*');
      const refused = nc.subscribe('token.refreshed.globex.*');
      expect(await Promise.race([refused.closed, sleep(REFUSAL_MS).then(() => 'open')])).toBeInstanceOf(
        PermissionViolationError,
      );
      expect(await Promise.race([sub.closed, sleep(SILENCE_MS).then(() => 'open')])).toBe('open');
      await nc.close();
    } finally {
      await nats.stop();
    }
  });
});

describe('tokenctl authz: JetStream under the narrow API permissions', () => {
  let nats: NatsServerHandle;
  const clients: Client[] = [];
  let refresher: Client;
  let audit: Client;
  let consumer: Client;

  beforeAll(async () => {
    const generated = buildAuthz({ refresher: true, audit: true, tenant: ['acme'] });
    nats = await startNatsServer({ jetstream: true, config: generated.config });
    const byName = new Map(generated.users.map((u) => [u.user.name, u]));
    for (const name of ['refresher', 'audit', 'svc-acme']) clients.push(await connectAs(nats, byName.get(name)!));
    [refresher, audit, consumer] = clients as [Client, Client, Client];
  });

  afterAll(async () => {
    for (const c of clients) await c.nc.close().catch(() => undefined);
    await nats?.stop();
  });

  it('the refresher creates TOKEN_AUDIT and publishes to it; the audit app creates, reads and acks its durable consumer', async () => {
    // The calls apps/refresher audit-stream.service and outbox-relay make.
    const jsm = await jetstreamManager(refresher.nc);
    const missing = await jsm.streams.info(AUDIT_STREAM).then(
      () => null,
      (e: unknown) => e,
    );
    expect(missing).toBeInstanceOf(JetStreamApiError);
    await jsm.streams.add({
      name: AUDIT_STREAM,
      subjects: [AUDIT_SUBJECT_FILTER],
      max_age: nanos(3_600_000),
      duplicate_window: nanos(60_000),
    });
    expect((await jsm.streams.info(AUDIT_STREAM)).config.max_age).toBe(nanos(3_600_000));
    const js = jetstream(refresher.nc);
    for (let i = 1; i <= 3; i++) {
      const ack = await js.publish(`audit.token.refreshed.acme.c${i}`, encoder.encode(`{"n":${i}}`), {
        msgID: `rec-${i}`,
      });
      expect(ack.seq).toBe(i);
    }

    // The calls apps/audit audit-consumer.service makes.
    const ajsm = await jetstreamManager(audit.nc);
    const none = await ajsm.consumers.info(AUDIT_STREAM, DEFAULT_AUDIT_CONSUMER).then(
      () => null,
      (e: unknown) => e,
    );
    expect(none).toBeInstanceOf(JetStreamApiError);
    await ajsm.consumers.add(AUDIT_STREAM, {
      durable_name: DEFAULT_AUDIT_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: AUDIT_SUBJECT_FILTER,
      max_ack_pending: 16,
    });
    await ajsm.consumers.update(AUDIT_STREAM, DEFAULT_AUDIT_CONSUMER, { max_ack_pending: 32 });
    const pull = await jetstream(audit.nc).consumers.get(AUDIT_STREAM, DEFAULT_AUDIT_CONSUMER);
    const messages = await pull.consume({ max_messages: 10 });
    const got: string[] = [];
    for await (const m of messages) {
      got.push(m.subject);
      m.ack();
      if (got.length === 3) break;
    }
    expect(got).toEqual([
      'audit.token.refreshed.acme.c1',
      'audit.token.refreshed.acme.c2',
      'audit.token.refreshed.acme.c3',
    ]);
    // Acks went through: nothing is left pending for redelivery.
    const deadline = Date.now() + 5_000;
    let info = await ajsm.consumers.info(AUDIT_STREAM, DEFAULT_AUDIT_CONSUMER);
    while (info.num_ack_pending > 0 && Date.now() < deadline) {
      await sleep(50);
      info = await ajsm.consumers.info(AUDIT_STREAM, DEFAULT_AUDIT_CONSUMER);
    }
    expect(info.num_ack_pending).toBe(0);
    expect(info.config.max_ack_pending).toBe(32);
  });

  it('nobody else reaches the stream: no update, delete, purge or reading for the refresher, no stream changes for the audit app, nothing for a consumer', async () => {
    await expectRequestRefused(refresher, `$JS.API.STREAM.UPDATE.${AUDIT_STREAM}`);
    await expectRequestRefused(refresher, `$JS.API.STREAM.DELETE.${AUDIT_STREAM}`);
    await expectRequestRefused(refresher, `$JS.API.STREAM.PURGE.${AUDIT_STREAM}`);
    await expectRequestRefused(refresher, `$JS.API.STREAM.MSG.GET.${AUDIT_STREAM}`);
    await expectRequestRefused(refresher, `$JS.API.CONSUMER.CREATE.${AUDIT_STREAM}.spy`);
    await expectRequestRefused(audit, `$JS.API.STREAM.UPDATE.${AUDIT_STREAM}`);
    await expectRequestRefused(audit, `$JS.API.CONSUMER.CREATE.${AUDIT_STREAM}.other`);
    await expectRequestRefused(audit, `$JS.API.CONSUMER.DELETE.${AUDIT_STREAM}.${DEFAULT_AUDIT_CONSUMER}`);
    await expectRequestRefused(consumer, '$JS.API.INFO');
    await expectRequestRefused(consumer, `$JS.API.CONSUMER.MSG.NEXT.${AUDIT_STREAM}.${DEFAULT_AUDIT_CONSUMER}`);
    await expectPublishRefused(consumer, 'audit.token.refreshed.acme.github');
  });
});

describe('tokenctl authz: names that used to collide are two users, in one run or in two', () => {
  let nats: NatsServerHandle;
  const clients: Client[] = [];

  afterAll(async () => {
    for (const c of clients) await c.nc.close().catch(() => undefined);
    await nats?.stop();
  });

  it('keeps --tenant acme-billing and --consumer acme:billing apart, each reaching its own tenant only', async () => {
    // Two separate runs, as an operator adding one tenant after the other would make them.
    const first = buildAuthz({ refresher: true, tenant: ['acme-billing'] });
    const second = buildAuthz({ consumer: ['acme:billing'] });
    const tenantConsumer = first.users.find((u) => u.user.role.kind === 'consumer')!;
    const service = second.users[0]!;
    expect(tenantConsumer.user.name).toBe('svc-acme_-billing');
    expect(service.user.name).toBe('svc-acme-billing');
    expect(tenantConsumer.user.inboxPrefix).not.toBe(service.user.inboxPrefix);
    // In one run too: no "two roles would share the user name".
    expect(buildAuthz({ tenant: ['acme-billing'], consumer: ['acme:billing'] }).users.map((u) => u.user.name)).toEqual([
      'admin-acme_-billing',
      'svc-acme_-billing',
      'svc-acme-billing',
    ]);

    nats = await startNatsServer({ config: renderServerConfig([...first.users, ...second.users]) });
    const [refresher, ownTenant, acmeService] = await Promise.all(
      [first.users[0]!, tenantConsumer, service].map((u) => connectAs(nats, u)),
    );
    clients.push(refresher!, ownTenant!, acmeService!);
    const sub = refresher!.nc.subscribe('token.get.>', { queue: 'refresher' });
    void (async () => {
      for await (const m of sub) m.respond(encoder.encode(JSON.stringify({ ok: true, subject: m.subject })));
    })();
    await refresher!.nc.flush();
    expect((await answeredOk(ownTenant!, 'token.get.acme-billing.github')).subject).toBe(
      'token.get.acme-billing.github',
    );
    expect((await answeredOk(acmeService!, 'token.get.acme.github')).subject).toBe('token.get.acme.github');
    await expectRequestRefused(ownTenant!, 'token.get.acme.github');
    await expectRequestRefused(acmeService!, 'token.get.acme-billing.github');
    await expectSubscribeRefused(acmeService!, `${tenantConsumer.user.inboxPrefix}.>`);
  });
});
