import { webhookSubject } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Db } from '../../audit/test/audit.harness.js';
import { DERIVE_LOCK_KEY } from '../src/persistence/webhook.repository.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';
import { WebhookReceiver } from './webhook-receiver.js';

const SECRET = 'retention-test-secret-of-more-than-32-chars';
const KEY = { tenant: 'acme', connection: 'crm' };
/** One key for both starts: the second refresher meets the first one's rows. */
const KEYS = testKeys();

/**
 * The outbox clean-up (AUDIT_OUTBOX_RETENTION_HOURS) against the webhook deliveries: a record
 * long published to JetStream but not yet turned into deliveries must stay until it is, and a
 * delivery still pending survives the clean-up of its record. Derivation is held up by
 * holding its advisory lock from the test, so the clean-up meets an underived record.
 */
describe('outbox retention: never a change whose webhooks are not yet made or delivered', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let sandbox: SandboxProvider;
  let receiver: WebhookReceiver;
  let caller: RawCaller;
  let db: Db;
  let refresher: TestRefresher | undefined;
  let lockHolder: pg.Client | undefined;

  const start = async () =>
    startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: database.url, keys: KEYS },
        { WEBHOOK_ALLOWED_NETWORKS: '127.0.0.0/8', WEBHOOK_INTERVAL_MS: '100', AUDIT_OUTBOX_RETENTION_HOURS: '1' },
      ),
      sandboxProviders(sandbox, { tenants: ['acme'] }),
    );

  beforeAll(async () => {
    [nats, database, sandbox, receiver] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_outbox_retention'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
      WebhookReceiver.start(SECRET),
    ]);
    caller = await RawCaller.connect(nats.url);
    db = new Db(database.url);
  }, 60_000);

  afterAll(async () => {
    await lockHolder?.end().catch(() => undefined);
    await refresher?.close();
    await caller?.close();
    await receiver?.close();
    await db?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await database?.drop();
  });

  it('keeps an old published record until its deliveries are made, and a pending delivery past its record', async () => {
    refresher = await start();
    const set = await caller.call(webhookSubject('set', 'acme'), {
      id: 'main',
      url: receiver.url,
      secret: SECRET,
      events: ['registered', 'refreshed'],
    });
    expect(set).toEqual({ ok: true });
    receiver.mode = 503;
    expect((await caller.admin('register', { ...KEY, provider: 'sandbox', ...sandbox.issueTokens() })).ok).toBe(true);
    await waitFor(() => receiver.received.length >= 1, { message: 'the registered delivery tried' });
    await waitFor(async () => (await db.count(`SELECT count(*) AS n FROM outbox WHERE published_at IS NULL`)) === 0, {
      message: 'the registered record published',
    });
    await refresher.close();
    refresher = undefined;

    // The registered record is derived (its delivery pending) and now two days old: the clean-up may take it.
    await db.rows(`UPDATE outbox SET published_at = now() - interval '48 hours' WHERE type = 'registered'`);
    lockHolder = new pg.Client({ connectionString: database.url });
    await lockHolder.connect();
    await lockHolder.query(`SELECT pg_advisory_lock($1::bigint)`, [DERIVE_LOCK_KEY]);
    // A change published two days ago whose deliveries were never made (a refresher that was
    // down, or derivation behind): the clean-up must leave it.
    const [{ id: underived }] = await db.rows<{ id: string }>(
      `INSERT INTO outbox (event_id, tenant, connection, type, subject, payload, published_at)
       VALUES (gen_random_uuid(), 'acme', 'crm', 'refreshed', 'audit.token.refreshed.acme.crm',
               jsonb_build_object('type', 'refreshed', 'tenant', 'acme', 'connection', 'crm', 'provider', 'sandbox',
                 'version', 2, 'at', (now() - interval '48 hours')::text, 'replica', 'gone'),
               now() - interval '48 hours')
       RETURNING id`,
    );

    refresher = await start();
    await waitFor(async () => (await db.count(`SELECT count(*) AS n FROM outbox WHERE type = 'registered'`)) === 0, {
      message: 'the clean-up ran (the derived two-day-old record is gone)',
    });
    expect(await db.rows(`SELECT id, webhooks_at FROM outbox WHERE id = $1`, [underived])).toEqual([
      { id: underived, webhooks_at: null },
    ]);
    expect(await db.count(`SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending'`)).toBe(1);

    // Derivation resumes; the receiver comes back: both changes arrive, in order.
    await lockHolder.query(`SELECT pg_advisory_unlock($1::bigint)`, [DERIVE_LOCK_KEY]);
    receiver.mode = 200;
    // Its retry comes on the backoff schedule (up to 30 s away by now); the test does not wait for it.
    await db.rows(`UPDATE webhook_deliveries SET next_attempt_at = now() WHERE state = 'pending'`);
    const accepted = await waitFor(() => (receiver.accepted().length >= 2 ? receiver.accepted() : null), {
      timeoutMs: 20_000,
      message: 'the pending and the late-derived change delivered',
    });
    expect(accepted.map((b) => [b.type, b.version])).toEqual([
      ['registered', 1],
      ['refreshed', 2],
    ]);
  });
});
