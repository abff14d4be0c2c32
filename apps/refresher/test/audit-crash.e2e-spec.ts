import { jetstreamManager } from '@nats-io/jetstream';
import { AUDIT_STREAM } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auditEnv,
  ChildApp,
  Db,
  startTestAudit,
  type TestAudit,
  waitForAuditToCatchUp,
  writeProvidersFile,
} from '../../audit/test/audit.harness.js';
import { RawCaller, testEnv, testKeys } from './refresher.harness.js';

const CREDENTIALS = 80;
const KILLS = 3;

/**
 * A refresh storm while the refresher process is killed with SIGKILL at random moments
 * and restarted: the outbox is written in the same statement as each change, so every
 * committed version has exactly one `refreshed` record, no record exists for a version
 * that was never committed, and JetStream's dedupe keeps the stream free of copies.
 */
describe('audit: refresher killed with SIGKILL during a refresh storm', () => {
  let nats: NatsServerHandle;
  let refresherDb: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let providers: ReturnType<typeof writeProvidersFile>;
  let refresher: ChildApp;
  let audit: TestAudit;
  let caller: RawCaller;
  let rdb: Db;
  let adb: Db;

  beforeAll(async () => {
    [nats, refresherDb, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_ac_r'),
      createTestDatabase('tk_ac_a'),
      // Short-lived tokens keep every credential refreshing about once a second. Without
      // rotation, a refresh cut off by the kill (the provider answered, the write never
      // happened) does not cost the credential its refresh token.
      startSandboxProvider({ accessTokenTtlSeconds: 2, rotateRefreshTokens: false }),
    ]);
    providers = writeProvidersFile(sandbox, { maxConcurrency: 16 });
    refresher = new ChildApp(
      'apps/refresher/src/main.ts',
      testEnv(
        { natsUrl: nats.url, databaseUrl: refresherDb.url, keys: testKeys() },
        {
          LOG_LEVEL: 'info',
          PROVIDERS_FILE: providers.path,
          SANDBOX_CLIENT_SECRET: 'sandbox-secret',
          REFRESH_MIN_MARGIN_SECONDS: '1',
          LEASE_SECONDS: '3',
          REFRESH_TIMEOUT_MS: '2000',
          AUDIT_RELAY_STANDBY_POLL_MS: '200',
        },
      ),
      'refresher started',
    );
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url));
    caller = await RawCaller.connect(nats.url);
    rdb = new Db(refresherDb.url);
    adb = new Db(auditDb.url);
  });

  afterAll(async () => {
    await refresher?.kill();
    await caller?.close();
    await audit?.close();
    await Promise.all([rdb?.close(), adb?.close()]);
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([refresherDb?.drop(), auditDb?.drop()]);
    providers?.remove();
  });

  it('keeps exactly one refreshed record per committed version across kills', async () => {
    await refresher.start();
    for (let i = 0; i < CREDENTIALS; i++) {
      const reply = await caller.admin('register', {
        tenant: `t${i % 4}`,
        connection: `c${i}`,
        provider: 'sandbox',
        refreshToken: sandbox.issueRefreshToken(),
      });
      expect(reply.ok).toBe(true);
    }
    for (let kill = 0; kill < KILLS; kill++) {
      await sleep(800 + Math.random() * 2_000);
      await refresher.kill();
      await refresher.start();
    }
    await sleep(2_000);
    await refresher.stop(); // graceful: the relay drains the outbox before NATS closes
    expect(refresher.starts).toBe(KILLS + 1);
    const refreshes = await rdb.count(`SELECT count(*) AS n FROM outbox WHERE type = 'refreshed'`);
    expect(refreshes).toBeGreaterThan(CREDENTIALS * 2);
    expect(await rdb.count('SELECT count(*) AS n FROM outbox WHERE published_at IS NULL')).toBe(0);

    // The audit table holds exactly the outbox: nothing lost, nothing extra.
    const { outbox, audit: stored } = await waitForAuditToCatchUp(rdb, adb);
    expect(stored).toEqual(outbox);
    expect(await adb.count('SELECT count(*) AS n FROM audit_records')).toBe(outbox.length);

    // JetStream stored each record once: the republished ones were deduplicated.
    const jsm = await jetstreamManager(caller.nc);
    expect((await jsm.streams.info(AUDIT_STREAM)).state.messages).toBe(outbox.length);

    // Every committed version has exactly one refreshed record; none exists for any other version.
    const credentials = await rdb.rows<{ tenant: string; connection: string; version: number; status: string }>(
      'SELECT tenant, connection, version, status FROM credentials ORDER BY tenant, connection',
    );
    expect(credentials).toHaveLength(CREDENTIALS);
    const refreshed = await adb.rows<{ tenant: string; connection: string; version: number; n: string }>(
      `SELECT tenant, connection, version, count(*) AS n FROM audit_records WHERE type = 'refreshed' GROUP BY tenant, connection, version`,
    );
    const versionsOf = new Map<string, number[]>();
    for (const row of refreshed) {
      expect(Number(row.n), `${row.tenant}/${row.connection} v${row.version}`).toBe(1);
      const id = `${row.tenant}/${row.connection}`;
      versionsOf.set(id, [...(versionsOf.get(id) ?? []), row.version]);
    }
    for (const c of credentials) {
      const versions = (versionsOf.get(`${c.tenant}/${c.connection}`) ?? []).sort((a, b) => a - b);
      // Registered with a refresh token only (version 1); each refresh commits the next version.
      expect(versions, `${c.tenant}/${c.connection}`).toEqual(Array.from({ length: c.version - 1 }, (_, i) => i + 2));
    }
    // Records of other types never name a version beyond the committed one either.
    const beyond = await adb.rows(
      `SELECT a.tenant, a.connection, a.type, a.version FROM audit_records a
       WHERE a.version > (SELECT max(r.version) FROM audit_records r WHERE r.tenant = a.tenant AND r.connection = a.connection AND r.type IN ('refreshed', 'registered'))`,
    );
    expect(beyond).toEqual([]);
    expect(credentials.filter((c) => c.status !== 'active')).toEqual([]);
  }, 90_000); // each start of the refresher process compiles it afresh: seconds on a busy machine
});
