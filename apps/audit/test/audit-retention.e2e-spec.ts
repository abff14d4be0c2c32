import { randomUUID } from 'node:crypto';
import { AUDIT_STREAM, AUDIT_SUBJECT_FILTER, encodeJson } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawCaller } from '../../refresher/test/refresher.harness.js';
import { AuditMetrics } from '../src/audit.metrics.js';
import { AuditRecordRepository } from '../src/persistence/audit-record.repository.js';
import { AuditRetention } from '../src/retention/audit-retention.service.js';
import { auditEnv, Db, startTestAudit, type TestAudit } from './audit.harness.js';

const DAY_MS = 86_400_000;

/**
 * Audit retention on real PostgreSQL: records older than AUDIT_RETENTION_DAYS go, younger
 * ones (one just inside the limit) stay, in statements of at most AUDIT_RETENTION_BATCH_SIZE
 * rows; the app sweeps at start by itself; 0 days deletes nothing.
 */
describe('audit: retention deletes records past the limit, in small batches', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let caller: RawCaller;
  let db: Db;
  let audit: TestAudit | undefined;

  beforeAll(async () => {
    [nats, database] = await Promise.all([startNatsServer({ jetstream: true }), createTestDatabase('tk_retention')]);
    caller = await RawCaller.connect(nats.url);
    await (await jetstreamManager(caller.nc)).streams.add({ name: AUDIT_STREAM, subjects: [AUDIT_SUBJECT_FILTER] });
    db = new Db(database.url);
  });

  afterAll(async () => {
    await audit?.close();
    await caller?.close();
    await db?.close();
    await nats?.stop();
    await database?.drop();
  });

  /** `count` records, the i-th `ageDays(i)` days old, inserted as the consumer would store them. */
  async function seed(tenant: string, count: number, ageDays: (i: number) => number): Promise<void> {
    for (let i = 0; i < count; i++) {
      await db.rows(
        `INSERT INTO audit_records (record_id, event_id, tenant, connection, provider, type, version, outcome, code, message, at, replica, received_at)
         VALUES (gen_random_uuid(), gen_random_uuid(), $1, 'c1', 'sandbox', 'refreshed', 1, 'ok', NULL, NULL, $2, 'r1', now())`,
        [tenant, new Date(Date.now() - ageDays(i) * DAY_MS)],
      );
    }
  }

  const countOf = (tenant: string) => db.count(`SELECT count(*) AS n FROM audit_records WHERE tenant = $1`, [tenant]);

  it('keeps everything with retention off (the default)', async () => {
    audit = await startTestAudit(auditEnv(nats.url, database.url));
    expect(audit.config.retention.days).toBe(0);
    await seed('off', 5, () => 4000);
    await audit.close();
    audit = undefined;
    expect(await countOf('off')).toBe(5);
    await db.rows(`DELETE FROM audit_records`);
  });

  it('deletes the old records and keeps the new ones, at most a batch per statement', { timeout: 60_000 }, async () => {
    await seed('old', 24, (i) => 31 + i * 10);
    await seed('edge-old', 1, () => 30 + 1 / 24);
    await seed('edge-new', 1, () => 30 - 1 / 24);
    await seed('new', 10, (i) => i * 2);

    const batches: number[] = [];
    const original = AuditRecordRepository.prototype.deleteOlderThan;
    AuditRecordRepository.prototype.deleteOlderThan = async function (this: AuditRecordRepository, cutoff, limit) {
      const n = await original.call(this, cutoff, limit);
      batches.push(n);
      return n;
    };
    try {
      // The app sweeps once at start, then every interval (an hour: not within this test).
      audit = await startTestAudit(
        auditEnv(nats.url, database.url, { AUDIT_RETENTION_DAYS: '30', AUDIT_RETENTION_BATCH_SIZE: '7' }),
      );
      await waitFor(async () => batches.length === 4, { timeoutMs: 20_000, message: 'the sweep at start' });
      expect(batches).toEqual([7, 7, 7, 4]);
      expect(await countOf('old')).toBe(0);
      expect(await countOf('edge-old')).toBe(0);
      expect(await countOf('edge-new')).toBe(1);
      expect(await countOf('new')).toBe(10);
      // Nothing left past the limit: another sweep is one empty statement.
      expect(await audit.app.get(AuditRetention).sweep()).toBe(0);
      expect(batches).toEqual([7, 7, 7, 4, 0]);
    } finally {
      AuditRecordRepository.prototype.deleteOlderThan = original;
      await audit?.close();
      audit = undefined;
    }
  });

  it('sweeps by itself when the app starts', { timeout: 60_000 }, async () => {
    await seed('at-start', 12, () => 400);
    audit = await startTestAudit(
      auditEnv(nats.url, database.url, { AUDIT_RETENTION_DAYS: '365', AUDIT_RETENTION_BATCH_SIZE: '5' }),
    );
    await waitFor(async () => (await countOf('at-start')) === 0, {
      timeoutMs: 20_000,
      message: 'records past a year deleted at start',
    });
    expect(await countOf('new')).toBe(10);
  });

  it('reports how far the stored trail is behind the events (tokenkeeper_audit_ingest_lag_seconds)', async () => {
    const twoHoursAgo = new Date(Date.now() - 7_200_000).toISOString();
    const eventId = randomUUID();
    await jetstream(caller.nc).publish(
      'audit.token.refreshed.lag.c1',
      encodeJson({
        eventId,
        type: 'refreshed',
        tenant: 'lag',
        connection: 'c1',
        provider: 'sandbox',
        version: 1,
        outcome: 'ok',
        at: twoHoursAgo,
        replica: 'synthetic',
      }),
      { msgID: eventId },
    );
    await waitFor(async () => (await countOf('lag')) === 1, { timeoutMs: 20_000, message: 'the late record stored' });
    const lag = (await audit!.app.get(AuditMetrics).ingestLag.get()).values[0]!.value;
    expect(lag).toBeGreaterThanOrEqual(7_200);
    expect(lag).toBeLessThan(7_200 + 60);
  });
});
