/**
 * Consumers in another region on a leaf node: a hub nats-server under the configuration
 * `tokenctl authz --leaf` generates (JetStream on, a leafnodes port), the refresher on the
 * hub, and a leaf nats-server without JetStream whose remote signs in as the generated leaf
 * user and whose own users are the consumers. The client library on the leaf gets its
 * tenant's tokens, verified, and the refreshes made on the hub; what the consumer's own
 * permissions and the leaf user's permissions leave out stays out, and a leaf that sends
 * no credentials is refused by the hub (the `no_auth_user` guard; docs/operations.md).
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { TokenClient } from '@tokenkeeper/client';
import { adminSubject, encodeJson, EventSigner, generateSigningSeed, tokenGetSubject } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  freePort,
  permissionError,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  TcpProxy,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';
import { buildAuthz } from '../apps/tokenctl/src/authz.command.js';
import { renderServerConfig, type GeneratedUser } from '../apps/tokenctl/src/authz.render.js';
import { credentialsOf, natsEnvOf } from '../apps/tokenctl/test/generated-users.js';

/** A request's timeout: long for a loaded machine; the refusals below come back at once. */
const REQUEST_MS = 10_000;

/** The leaf's file: the consumers as its own users, and one remote to the hub's leafnodes port. */
function leafConfig(consumers: readonly GeneratedUser[], hubLeafPort: number, credentials: string): string {
  return `${renderServerConfig(consumers)}leafnodes {\n  remotes: [ { url: "nats-leaf://${credentials}127.0.0.1:${hubLeafPort}" } ]\n}\n`;
}

describe('consumers on a leaf node of the hub', () => {
  let hub: NatsServerHandle;
  let leaf: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let users: Map<string, GeneratedUser>;
  let hubLeafPort: number;
  /** Between the leaf and the hub's leafnodes port: the link between the regions, to cut. */
  let link: TcpProxy;
  const connections: NatsConnection[] = [];
  const clients: TokenClient[] = [];
  const servers: NatsServerHandle[] = [];
  const logDir = mkdtempSync(join(tmpdir(), 'tk-leaf-logs-'));

  const connectTo = async (server: NatsServerHandle, name: string): Promise<NatsConnection> => {
    const user = users.get(name)!;
    const nc = await connect({
      servers: server.url,
      ...credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      name,
      noAsyncTraces: true,
    });
    connections.push(nc);
    return nc;
  };

  const call = async (nc: NatsConnection, subject: string, body: unknown = {}): Promise<any> =>
    (await nc.request(subject, encodeJson(body), { timeout: REQUEST_MS })).json();

  /** How a request ended: the reply's JSON, or the error. */
  const outcome = (nc: NatsConnection, subject: string): Promise<unknown> =>
    nc.request(subject, encodeJson({}), { timeout: REQUEST_MS }).then(
      (m) => m.json(),
      (error: unknown) => error,
    );

  const register = async (tenant: string, connection: string): Promise<void> => {
    const admin = await connectTo(hub, `admin-${tenant}`);
    const registered = await call(admin, adminSubject('register', tenant, connection), {
      provider: 'sandbox',
      ...sandbox.issueTokens(),
      expiresIn: 3600,
    });
    expect(registered).toMatchObject({ ok: true, credential: { tenant, connection, version: 1 } });
  };

  const newClient = (trustedSigners: string[]): TokenClient => {
    const user = users.get('svc-acme-billing')!;
    const client = new TokenClient({
      servers: leaf.url,
      connectOptions: credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      connections: [{ tenant: 'acme', connection: 'github' }],
      trustedSigners,
    });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    // A literal scope entry: nats-server before 2.9.16 does not pass the refresher's
    // `token.get.*.*` interest to a leaf whose grant is `token.get.acme.*` (docs/operations.md).
    const generated = buildAuthz({
      refresher: true,
      tenant: ['acme', 'globex'],
      consumer: ['acme:billing:github'],
      leaf: ['eu:acme.github'],
    });
    users = new Map(generated.users.map((u) => [u.user.name, u]));
    hubLeafPort = await freePort();
    link = await TcpProxy.start({ port: hubLeafPort });
    // The hub tells its leaves where to reconnect: the link's address, or a leaf that lost the
    // link would reconnect around it, straight to the listen address.
    const leafnodes = `leafnodes {\n  listen: "127.0.0.1:${hubLeafPort}"\n  advertise: "127.0.0.1:${link.port}"\n}\n`;
    [hub, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config: `${generated.config}${leafnodes}` }),
      createTestDatabase('tk_leaf'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    servers.push(hub);
    // svc-globex is on the leaf too, as a consumer the leaf user does not serve.
    const leafUser = credentialsOf(users.get('leaf-eu')!);
    leaf = await startNatsServer({
      config: leafConfig(
        [users.get('svc-acme-billing')!, users.get('svc-globex')!],
        link.port,
        `${leafUser.user}:${leafUser.pass}@`,
      ),
    });
    servers.push(leaf);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: hub.url, databaseUrl: db.url, keys: testKeys() }, natsEnvOf(users.get('refresher')!)),
      sandboxProviders(sandbox),
    );
    await Promise.all([register('acme', 'github'), register('globex', 'github')]);
    await linkUp();
  }, 180_000);

  /** The leaf connects (again) and learns the hub's interest in its own time: until then, no responders. */
  const linkUp = async (): Promise<void> => {
    const probe = await connectTo(leaf, 'svc-acme-billing');
    await waitFor(async () => ((await outcome(probe, tokenGetSubject('acme', 'github'))) as { ok?: boolean }).ok, {
      timeoutMs: 30_000,
    });
  };

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await refresher?.close();
    await Promise.all([sandbox?.close(), link?.close(), ...servers.map((s) => s.stop())]);
    await db?.drop();
    rmSync(logDir, { recursive: true, force: true });
  });

  it('token.get through the leaf is answered by the refresher on the hub, signed, and a refresh on the hub is pushed to the leaf', async () => {
    const client = newClient([refresher.signerPublicKey]);
    await client.start();
    const first = await client.getToken({ tenant: 'acme', connection: 'github' });
    expect(first).toMatchObject({ tenant: 'acme', connection: 'github', version: 1 });
    expect(client.stats.rejectedReplies).toBe(0);

    // The signature is checked on this path: a client trusting another key refuses the same reply.
    const distrustful = newClient([EventSigner.fromSeed(generateSigningSeed()).publicKey]);
    await distrustful.start();
    await expect(distrustful.getAccessToken({ tenant: 'acme', connection: 'github' })).rejects.toThrow(
      /unverified reply \(untrusted\)/,
    );
    expect(distrustful.stats.rejectedReplies).toBe(1);

    const admin = await connectTo(hub, 'admin-acme');
    expect(await call(admin, adminSubject('refresh', 'acme', 'github'))).toMatchObject({
      ok: true,
      credential: { version: 2 },
    });
    // Pushed across the leaf connection: the cache moves to version 2 without another request.
    const fallbacks = client.stats.fallbacks;
    await waitFor(() => client.peekAccessToken({ tenant: 'acme', connection: 'github' }) !== first.accessToken, {
      timeoutMs: 20_000,
    });
    const second = await client.getToken({ tenant: 'acme', connection: 'github' });
    expect(second.version).toBe(2);
    expect(client.stats.fallbacks).toBe(fallbacks);
    expect(client.stats.pushedUpdates).toBeGreaterThan(0);
    expect(client.stats.rejectedEvents).toBe(0);
  }, 90_000);

  it("a consumer on the leaf is refused another tenant's token by the leaf, beside its own tenant's answered", async () => {
    const acme = await connectTo(leaf, 'svc-acme-billing');
    expect(await outcome(acme, tokenGetSubject('acme', 'github'))).toMatchObject({ ok: true, token: { version: 2 } });
    const refused = permissionError(await outcome(acme, tokenGetSubject('globex', 'github')));
    expect(refused).toBeInstanceOf(PermissionViolationError);
    expect(refused!.operation).toBe('publish');
    expect(refused!.subject).toBe(tokenGetSubject('globex', 'github'));
  }, 60_000);

  it("the leaf user's permissions keep out a tenant the leaf does not serve, even for a consumer the leaf itself lets in", async () => {
    // svc-globex may ask for globex on the leaf (its own users), but the leaf's connection to the
    // hub may only carry acme: the request goes nowhere. On the hub, the same user is answered.
    const onLeaf = await connectTo(leaf, 'svc-globex');
    expect(String(await outcome(onLeaf, tokenGetSubject('globex', 'github')))).toMatch(/no responders/i);
    const onHub = await connectTo(hub, 'svc-globex');
    expect(await outcome(onHub, tokenGetSubject('globex', 'github'))).toMatchObject({
      ok: true,
      token: { version: 1 },
    });

    // Nor do globex's events cross: refresh globex, then acme; acme's event comes over the same
    // leaf connection after globex's would have, and the flush after it empties what was sent.
    const globexEvents: string[] = [];
    const acmeEvents: string[] = [];
    onLeaf.subscribe('token.refreshed.globex.>', { callback: (_e, m) => void globexEvents.push(m.subject) });
    const acme = await connectTo(leaf, 'svc-acme-billing');
    acme.subscribe('token.refreshed.acme.github', { callback: (_e, m) => void acmeEvents.push(m.subject) });
    await Promise.all([onLeaf.flush(), acme.flush()]);
    const refresh = async (tenant: string) =>
      call(await connectTo(hub, `admin-${tenant}`), adminSubject('refresh', tenant, 'github'));
    expect(await refresh('globex')).toMatchObject({ ok: true });
    expect(await refresh('acme')).toMatchObject({ ok: true });
    await waitFor(() => acmeEvents.length > 0, { timeoutMs: 20_000 });
    await onLeaf.flush();
    expect(globexEvents).toEqual([]);
  }, 60_000);

  it('when the leaf loses the hub, requests through it fail with no responders, the cache keeps serving what is valid, and pushes resume once it is back', async () => {
    const key = { tenant: 'acme', connection: 'github' };
    const admin = await connectTo(hub, 'admin-acme');
    const client = newClient([refresher.signerPublicKey]);
    await client.start();
    const before = await client.getToken(key);
    const probe = await connectTo(leaf, 'svc-acme-billing');

    link.pause();
    // The leaf forgets the hub's interest as its link drops: a request is refused at once, not left to time out.
    await waitFor(async () => /no responders/i.test(String(await outcome(probe, tokenGetSubject('acme', 'github')))), {
      timeoutMs: 20_000,
    });
    const during = await call(admin, adminSubject('refresh', 'acme', 'github'));
    expect(during).toMatchObject({ ok: true, credential: { version: before.version + 1 } });
    // That event was lost for the leaf; the cache serves the older token while it is valid, as its rules say.
    await probe.flush();
    expect(client.peekAccessToken(key)).toBe(before.accessToken);
    expect((await client.getToken(key)).version).toBe(before.version);

    link.resume();
    await linkUp();
    const fallbacks = client.stats.fallbacks;
    const after = await call(admin, adminSubject('refresh', 'acme', 'github'));
    expect(after).toMatchObject({ ok: true, credential: { version: before.version + 2 } });
    await waitFor(() => client.peekAccessToken(key) !== before.accessToken, { timeoutMs: 20_000 });
    expect((await client.getToken(key)).version).toBe(before.version + 2);
    expect(client.stats.fallbacks).toBe(fallbacks);
  }, 90_000);

  it('a leaf that sends no credentials is refused by the hub, so its consumers reach nothing', async () => {
    const log = join(logDir, 'anonymous-leaf.log');
    const anonymous = await startNatsServer({
      config: leafConfig([users.get('svc-acme-billing')!], hubLeafPort, ''),
      args: ['-l', log],
    });
    servers.push(anonymous);
    // The hub's refusal, as the leaf logs it; without the guard it connects and is served.
    await waitFor(() => readLog(log).includes('Authorization Violation'), { timeoutMs: 30_000 });
    const consumer = await connectTo(anonymous, 'svc-acme-billing');
    expect(String(await outcome(consumer, tokenGetSubject('acme', 'github')))).toMatch(/no responders/i);
  }, 60_000);
});

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
