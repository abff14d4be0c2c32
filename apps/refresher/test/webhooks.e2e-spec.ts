import { WebhookBodySchema, webhookSubject } from '@tokenkeeper/contracts';
import { Secret } from '@tokenkeeper/common';
import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Db } from '../../audit/test/audit.harness.js';
import { WebhookDeliveryClient } from '../src/webhooks/webhook-delivery.client.js';
import { EventLog } from './e2e-support.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';
import { verifySignature, WebhookReceiver } from './webhook-receiver.js';

const ALL_EVENTS = ['registered', 'refreshed', 'failed', 'reauth_required', 'revoked'];
const secretFor = (tenant: string) => `whsec-${tenant}-${'s'.repeat(32)}`;

describe('webhooks: signed deliveries from the outbox, retried in order, parked, never a token', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let db: Db;
  let events: EventLog;
  const receivers: WebhookReceiver[] = [];

  const endpoint = async (
    tenant: string,
    mode: WebhookReceiver['mode'] = 200,
    eventTypes: string[] = ALL_EVENTS,
  ): Promise<WebhookReceiver> => {
    const receiver = await WebhookReceiver.start(secretFor(tenant));
    receiver.mode = mode;
    receivers.push(receiver);
    const set = await caller.call(webhookSubject('set', tenant), {
      id: 'main',
      url: receiver.url,
      secret: secretFor(tenant),
      events: eventTypes,
    });
    expect(set).toEqual({ ok: true });
    return receiver;
  };
  const list = (tenant: string) => caller.call(webhookSubject('list', tenant), {});

  beforeAll(async () => {
    [nats, database, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_webhooks'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: database.url, keys: testKeys() },
        {
          WEBHOOK_ALLOWED_NETWORKS: '127.0.0.0/8',
          WEBHOOK_INTERVAL_MS: '100',
          WEBHOOK_TIMEOUT_MS: '2000',
          // Short, so that parking (after the attempts at about 0, 1 and 6 s) happens within the test.
          WEBHOOK_RETRY_BUDGET_SECONDS: '20',
        },
      ),
      sandboxProviders(sandbox, { tenants: ['acme', 'beta', 'gamma', 'delta', 'epsilon'] }),
    );
    caller = await RawCaller.connect(nats.url);
    events = new EventLog(caller.nc);
    db = new Db(database.url);
  }, 60_000);

  afterAll(async () => {
    events?.close();
    await caller?.close();
    await refresher?.close();
    await Promise.all(receivers.map((r) => r.close()));
    await db?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await database?.drop();
  });

  it('delivers each change signed by the documented recipe, with the metadata and no token in any body', async () => {
    const receiver = await endpoint('acme');
    const planted = sandbox.issueTokens();
    const metadata = { customer: 'cus_42', displayName: 'Acme Inc.' };
    const reg = await caller.admin('register', {
      tenant: 'acme',
      connection: 'crm',
      provider: 'sandbox',
      metadata,
      ...planted,
    });
    expect(reg.ok).toBe(true);
    const refreshed = await caller.admin('refresh', { tenant: 'acme', connection: 'crm' });
    expect(refreshed.ok).toBe(true);
    const served = await caller.get({ tenant: 'acme', connection: 'crm' });
    const accepted = await waitFor(() => (receiver.accepted().length >= 2 ? receiver.accepted() : null), {
      message: 'registered and refreshed delivered',
    });
    expect(accepted.map((b) => [b.type, b.version])).toEqual([
      ['registered', 1],
      ['refreshed', 2],
    ]);
    for (const delivery of receiver.received) {
      expect(delivery.verified).toBe(true);
      expect(verifySignature('another-secret-of-at-least-32-characters', delivery.header, delivery.raw)).toBe(false);
      const t = Number(/^t=(\d+),v1=[0-9a-f]{64}$/.exec(delivery.header!)![1]);
      expect(Math.abs(t - Date.now() / 1000)).toBeLessThan(120);
      const body = WebhookBodySchema.strict().parse(delivery.body);
      expect(body).toMatchObject({ tenant: 'acme', connection: 'crm', provider: 'sandbox', status: 'active' });
      expect(body.metadata).toEqual(metadata);
      for (const token of [planted.accessToken, planted.refreshToken, served.accessToken]) {
        expect(delivery.raw).not.toContain(token);
      }
    }
    const listed = await list('acme');
    expect(listed.items).toEqual([
      {
        id: 'main',
        url: receiver.url,
        events: ALL_EVENTS,
        lastDelivery: expect.objectContaining({ state: 'delivered', status: 200, attempts: 1 }),
      },
    ]);
    expect(JSON.stringify(listed)).not.toContain(secretFor('acme'));
    // Stored encrypted: the secret is nowhere in the table as text.
    expect(
      await db.count(
        `SELECT count(*) AS n FROM webhook_endpoints WHERE position($1 in secret_enc::text) > 0 OR position(convert_to($1, 'UTF8') in secret_enc) > 0`,
        [secretFor('acme')],
      ),
    ).toBe(0);
    expect(
      await db.count(`SELECT count(*) AS n FROM outbox WHERE type = 'webhook_delivered' AND tenant = 'acme'`),
    ).toBe(2);
  });

  it('while the receiver is down only the oldest change is tried; later all arrive in order with the same ids', async () => {
    const receiver = await endpoint('beta', 503);
    await caller.admin('register', {
      tenant: 'beta',
      connection: 'crm',
      provider: 'sandbox',
      ...sandbox.issueTokens(),
    });
    await caller.admin('refresh', { tenant: 'beta', connection: 'crm' });
    await caller.admin('refresh', { tenant: 'beta', connection: 'crm' });
    await waitFor(() => receiver.received.length >= 2, { message: 'two failed attempts' });
    const whileDown = receiver.received.map((d) => d.body.id);
    // One in flight per credential: every attempt so far was the first change, under one id.
    expect(new Set(whileDown).size).toBe(1);
    receiver.mode = 200;
    const accepted = await waitFor(() => (receiver.accepted().length >= 3 ? receiver.accepted() : null), {
      timeoutMs: 20_000,
      message: 'three changes delivered after the receiver came back',
    });
    expect(accepted.map((b) => b.version)).toEqual([1, 2, 3]);
    expect(accepted[0].id).toBe(whileDown[0]);
    expect(
      receiver.received
        .filter((d) => d.answered === 503)
        .every((d) => d.raw === receiver.received.find((a) => a.body.id === d.body.id && a.answered === 200)!.raw),
    ).toBe(true);
  });

  it('a failing credential that recovers: exactly one token.recovered and one recovered delivery', async () => {
    const key = { tenant: 'epsilon', connection: 'crm' };
    const receiver = await endpoint('epsilon', 200, ['failed', 'recovered', 'refreshed']);
    await caller.admin('register', { ...key, provider: 'sandbox', ...sandbox.issueTokens() });
    // One refused refresh makes the credential failing; the refresher's own retry succeeds.
    sandbox.injectFault({ type: 'status', status: 503 });
    expect(await caller.admin('refresh', key)).toMatchObject({ ok: false });
    await waitFor(() => events.of('recovered', key.tenant, key.connection).length > 0, {
      timeoutMs: 15_000,
      message: 'token.recovered',
    });
    // A later refresh of the now active credential recovers nothing.
    expect(await caller.admin('refresh', key)).toMatchObject({ ok: true });
    const accepted = await waitFor(() => (receiver.accepted().length >= 4 ? receiver.accepted() : null), {
      timeoutMs: 15_000,
      message: 'failed, recovered and two refreshed delivered',
    });
    expect(accepted.map((b) => b.type)).toEqual(['failed', 'refreshed', 'recovered', 'refreshed']);
    const recovered = accepted.filter((b) => b.type === 'recovered');
    expect(recovered).toHaveLength(1);
    expect(recovered[0]).toMatchObject({ tenant: 'epsilon', connection: 'crm', status: 'active' });
    expect(events.of('recovered', key.tenant, key.connection)).toHaveLength(1);
    expect(recovered[0].version).toBe(events.of('recovered', key.tenant, key.connection)[0]!.data.version);
    expect(receiver.received.every((d) => d.verified)).toBe(true);
  });

  it('does not follow a redirect, and records what the endpoint answered', async () => {
    const receiver = await endpoint('gamma', 'redirect');
    await caller.admin('register', {
      tenant: 'gamma',
      connection: 'crm',
      provider: 'sandbox',
      ...sandbox.issueTokens(),
    });
    await waitFor(() => receiver.received.length >= 2, { message: 'the first delivery tried twice' });
    await sleep(300);
    expect(receiver.received.filter((d) => d.path !== '/hook')).toEqual([]);
    expect((await list('gamma')).items[0].lastDelivery).toMatchObject({ state: 'pending', status: 302 });
  });

  it('parks a delivery once its retry budget is spent, lists it and audits it', async () => {
    const receiver = await endpoint('delta', 500);
    await caller.admin('register', {
      tenant: 'delta',
      connection: 'crm',
      provider: 'sandbox',
      ...sandbox.issueTokens(),
    });
    const parked = await waitFor(
      async () => {
        const item = (await list('delta')).items[0];
        return item.lastDelivery?.state === 'parked' ? item.lastDelivery : null;
      },
      { timeoutMs: 30_000, message: 'the delivery parked' },
    );
    expect(parked).toMatchObject({ status: 500, attempts: receiver.received.length });
    expect(receiver.received.length).toBeGreaterThanOrEqual(3);
    const records = await db.rows(`SELECT payload FROM outbox WHERE type = 'webhook_parked' AND tenant = 'delta'`);
    expect(records).toHaveLength(1);
    expect(records[0].payload).toMatchObject({ outcome: 'main', code: 'http_500', connection: 'crm' });
  });

  it('refuses an endpoint on 127.0.0.1 unless WEBHOOK_ALLOWED_NETWORKS lists it (also when a name resolves there)', async () => {
    const receiver = await WebhookReceiver.start('x'.repeat(32));
    receivers.push(receiver);
    const attempt = { secret: new Secret('x'.repeat(32)), body: '{}' };
    const refusing = new WebhookDeliveryClient({ allowedNetworks: [], timeoutMs: 2_000, maxResponseBytes: 1_024 });
    const localhost = receiver.url.replace('127.0.0.1', 'localhost');
    expect(await refusing.deliver({ ...attempt, url: receiver.url })).toEqual({
      ok: false,
      status: null,
      error: 'address_refused',
    });
    expect(await refusing.deliver({ ...attempt, url: localhost })).toEqual({
      ok: false,
      status: null,
      error: 'address_refused',
    });
    expect(receiver.received).toHaveLength(0);
    const allowing = new WebhookDeliveryClient({
      allowedNetworks: ['127.0.0.0/8'],
      timeoutMs: 2_000,
      maxResponseBytes: 1_024,
    });
    expect(await allowing.deliver({ ...attempt, url: receiver.url })).toEqual({ ok: true, status: 200 });
    expect(receiver.received).toHaveLength(1);
  });

  it('refuses bad endpoints at set: a short secret, an unknown event, a bad id', async () => {
    const base = { id: 'x', url: 'https://hooks.example.com/a', secret: 's'.repeat(32), events: ['refreshed'] };
    for (const bad of [
      { ...base, secret: 's'.repeat(31) },
      { ...base, events: ['token_stolen'] },
      { ...base, id: 'a.b' },
      { ...base, url: 'ftp://hooks.example.com/' },
    ]) {
      const reply = await caller.call(webhookSubject('set', 'acme'), bad);
      expect(reply).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(JSON.stringify(reply)).not.toContain('s'.repeat(31));
    }
    expect(await caller.call(webhookSubject('delete', 'acme'), { id: 'nope' })).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
  });
});
