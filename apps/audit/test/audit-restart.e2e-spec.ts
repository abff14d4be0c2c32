import { randomUUID } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { encodeJson } from '@tokenkeeper/contracts';
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
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../../refresher/test/refresher.harness.js';
import { auditEnv, ChildApp, Db, readAuditStream } from './audit.harness.js';

const CREDENTIALS = 40;
const BACKLOG = 3_000;
const KILLS = 3;

/**
 * The audit app (`npm run start:audit` as a child process) is killed with SIGKILL
 * mid-stream and restarted, several times, while the refresher keeps publishing and a
 * backlog waits in the stream: every record in the stream ends up in the audit table
 * exactly once.
 */
describe('audit: audit app killed and restarted mid-stream', () => {
  let nats: NatsServerHandle;
  let refresherDb: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: ChildApp;
  let caller: RawCaller;
  let rdb: Db;
  let adb: Db;

  beforeAll(async () => {
    [nats, refresherDb, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_ar_r'),
      createTestDatabase('tk_ar_a'),
      startSandboxProvider({ accessTokenTtlSeconds: 2 }),
    ]);
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: refresherDb.url, keys: testKeys() },
        { REFRESH_MIN_MARGIN_SECONDS: '1' },
      ),
      sandboxProviders(sandbox),
    );
    // Small batches and a small in-flight window: many acks outstanding at any instant.
    audit = new ChildApp(
      'apps/audit/src/main.ts',
      auditEnv(nats.url, auditDb.url, {
        LOG_LEVEL: 'info',
        AUDIT_MAX_IN_FLIGHT: '64',
        AUDIT_INSERT_BATCH_SIZE: '16',
        AUDIT_ACK_WAIT_SECONDS: '2',
      }),
      'audit started',
    );
    caller = await RawCaller.connect(nats.url);
    rdb = new Db(refresherDb.url);
    adb = new Db(auditDb.url);
  });

  afterAll(async () => {
    await audit?.kill();
    await caller?.close();
    await refresher?.close();
    await Promise.all([rdb?.close(), adb?.close()]);
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([refresherDb?.drop(), auditDb?.drop()]);
  });

  it('loses no record and stores none twice', { timeout: 90_000 }, async () => {
    for (let i = 0; i < CREDENTIALS; i++) {
      const reply = await caller.admin('register', {
        tenant: 'storm',
        connection: `c${i}`,
        provider: 'sandbox',
        refreshToken: sandbox.issueRefreshToken(),
      });
      expect(reply.ok).toBe(true);
    }
    // A backlog for the audit app to chew on when it first starts.
    const js = jetstream(caller.nc);
    const acks = [];
    for (let i = 0; i < BACKLOG; i++) {
      const record = {
        eventId: randomUUID(),
        type: 'refresh_started',
        tenant: 'backlog',
        connection: `c${i % 50}`,
        provider: 'sandbox',
        version: i,
        at: new Date().toISOString(),
        replica: 'synthetic',
      };
      acks.push(
        js.publish(`audit.token.refresh_started.backlog.${record.connection}`, encodeJson(record), {
          msgID: record.eventId,
        }),
      );
    }
    await Promise.all(acks);

    await audit.start();
    for (let kill = 0; kill < KILLS; kill++) {
      // Kill while it is storing: at least some records in, not all.
      await waitFor(
        async () => (await adb.count('SELECT count(*) AS n FROM audit_records').catch(() => 0)) > (kill + 1) * 200,
        { timeoutMs: 20_000, intervalMs: 10, message: 'progress before the kill' },
      );
      await sleep(Math.random() * 300);
      await audit.kill();
      await sleep(500 + Math.random() * 1_000); // the refresher keeps publishing meanwhile
      await audit.start();
    }
    expect(audit.starts).toBe(KILLS + 1);
    const storedBeforeEnd = await adb.count('SELECT count(*) AS n FROM audit_records');
    await refresher.close(); // the relay drains; the stream now holds every record

    expect(await rdb.count('SELECT count(*) AS n FROM outbox WHERE published_at IS NULL')).toBe(0);
    const stream = await readAuditStream(caller.nc);
    const streamIds = stream.map((m) => JSON.parse(m.data).eventId as string).sort();
    expect(new Set(streamIds).size).toBe(streamIds.length);
    expect(streamIds.length).toBeGreaterThan(BACKLOG + CREDENTIALS * 4);
    expect(storedBeforeEnd).toBeLessThan(streamIds.length);

    const stored = await waitFor(
      async () => {
        const ids = (await adb.rows<{ event_id: string }>('SELECT event_id FROM audit_records ORDER BY event_id')).map(
          (r) => r.event_id,
        );
        return ids.length >= streamIds.length ? ids : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250, message: 'the audit table to hold every record of the stream' },
    );
    const sortedStored = [...stored].sort();
    expect(sortedStored).toEqual(streamIds);
    const outbox = (await rdb.rows<{ event_id: string }>('SELECT event_id FROM outbox')).map((r) => r.event_id);
    const storedSet = new Set(stored);
    expect(outbox.filter((id) => !storedSet.has(id))).toEqual([]);
    await audit.stop();
    expect(audit.log).not.toMatch(/"level":"(error|fatal)"/);
  });
});
