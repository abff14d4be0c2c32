import { jetstreamManager } from '@nats-io/jetstream';
import { AUDIT_STREAM } from '@tokenkeeper/contracts';
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
import { auditEnv, Db, startTestAudit, type TestAudit, waitForAuditToCatchUp } from '../../audit/test/audit.harness.js';
import { OutboxRelay } from '../src/audit/outbox-relay.service.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

const CREDENTIALS = 30;

/**
 * The relay while NATS is away (the outbox grows, then drains completely), and with
 * several refresher replicas (one active relay, a standby that takes over).
 */
describe('audit: outbox relay through a NATS outage and across replicas', () => {
  let nats: NatsServerHandle;
  let refresherDb: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let keys: string;
  let replicaA: TestRefresher;
  let replicaB: TestRefresher | undefined;
  let audit: TestAudit;
  let caller: RawCaller;
  let rdb: Db;
  let adb: Db;
  const env = (replica: string) =>
    testEnv(
      { natsUrl: nats.url, databaseUrl: refresherDb.url, keys },
      {
        REPLICA_ID: replica,
        REFRESH_MIN_MARGIN_SECONDS: '1',
        AUDIT_RELAY_STANDBY_POLL_MS: '200',
        AUDIT_RELAY_BACKOFF_MAX_MS: '1000',
      },
    );
  const backlog = () => rdb.count('SELECT count(*) AS n FROM outbox WHERE published_at IS NULL');

  beforeAll(async () => {
    keys = testKeys();
    [nats, refresherDb, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_ao_r'),
      createTestDatabase('tk_ao_a'),
      startSandboxProvider({ accessTokenTtlSeconds: 2 }),
    ]);
    replicaA = await startTestRefresher(env('replica-a'), sandboxProviders(sandbox));
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url));
    caller = await RawCaller.connect(nats.url);
    rdb = new Db(refresherDb.url);
    adb = new Db(auditDb.url);
    for (let i = 0; i < CREDENTIALS; i++) {
      const reply = await caller.admin('register', {
        tenant: 'outage',
        connection: `c${i}`,
        provider: 'sandbox',
        refreshToken: sandbox.issueRefreshToken(),
      });
      expect(reply.ok).toBe(true);
    }
  });

  afterAll(async () => {
    await caller?.close();
    await audit?.close();
    await replicaB?.close();
    await replicaA?.close();
    await Promise.all([rdb?.close(), adb?.close()]);
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([refresherDb?.drop(), auditDb?.drop()]);
  });

  it('lets the outbox grow while NATS is away and drains it completely when NATS is back', async () => {
    const relay = replicaA.app.get(OutboxRelay);
    await waitFor(async () => (await adb.count('SELECT count(*) AS n FROM audit_records')) > CREDENTIALS * 2, {
      timeoutMs: 15_000,
      message: 'records flowing',
    });
    expect(relay.isActive).toBe(true);

    await nats.stop();
    const before = await backlog();
    await sleep(3_000);
    const during = await backlog();
    await sleep(2_000);
    const later = await backlog();
    // Refreshes go on without NATS; their records wait in the outbox.
    expect(during).toBeGreaterThan(before);
    expect(later).toBeGreaterThan(during);
    expect(later).toBeGreaterThan(CREDENTIALS);
    expect(await relay.backlog()).toBeGreaterThanOrEqual(later);

    await nats.restart();
    await waitFor(async () => (await backlog()) === 0, {
      timeoutMs: 30_000,
      intervalMs: 100,
      message: 'the outbox to drain after NATS came back',
    });
    // The relay's own count (the outbox backlog metric) drains too; refreshes go on meanwhile,
    // so it is awaited like the count above rather than read once right after it.
    await waitFor(async () => (await relay.backlog()) === 0, {
      timeoutMs: 10_000,
      intervalMs: 50,
      message: 'the relay to report an empty outbox',
    });
    const { outbox, audit: stored } = await waitForAuditToCatchUp(rdb, adb);
    // The records refreshed meanwhile may still be on their way; every outbox row so far is stored.
    const storedSet = new Set(stored);
    expect(outbox.filter((id) => !storedSet.has(id))).toEqual([]);
    expect(stored.length).toBe(new Set(stored).size);
  });

  it('runs one active relay across replicas and fails over to a standby', async () => {
    replicaB = await startTestRefresher(env('replica-b'), sandboxProviders(sandbox));
    const relayA = replicaA.app.get(OutboxRelay);
    const relayB = replicaB.app.get(OutboxRelay);
    await sleep(1_000);
    expect([relayA.isActive, relayB.isActive]).toEqual([true, false]);
    expect(
      await rdb.count(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`),
    ).toBe(1);
    // Both replicas refresh (and write outbox rows); only A publishes.
    const publishedByB = relayB.published;
    await sleep(1_500);
    expect(relayB.published).toBe(publishedByB);

    await replicaA.close(); // A drains, then its lock session ends
    await waitFor(() => relayB.isActive, { timeoutMs: 5_000, message: 'the standby relay to take over' });
    await waitFor(() => relayB.published > publishedByB, { timeoutMs: 10_000, message: 'the new relay to publish' });
    await replicaB.close();
    replicaB = undefined;

    expect(await backlog()).toBe(0);
    const { outbox, audit: stored } = await waitForAuditToCatchUp(rdb, adb);
    expect(stored).toEqual(outbox);
    const jsm = await jetstreamManager(caller.nc);
    expect((await jsm.streams.info(AUDIT_STREAM)).state.messages).toBe(outbox.length);
    const replicas = await adb.rows<{ replica: string }>(
      `SELECT DISTINCT replica FROM audit_records WHERE type = 'refreshed' ORDER BY replica`,
    );
    expect(replicas.map((r) => r.replica)).toEqual(['replica-a', 'replica-b']);
  });
});
