import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { AUDIT_STREAM, AUDIT_SUBJECT_FILTER, encodeJson } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockDatabase, unblockDatabase } from '../../refresher/test/ops-support.js';
import { RawCaller } from '../../refresher/test/refresher.harness.js';
import { auditEnv, Db, startTestAudit, type TestAudit } from './audit.harness.js';

/**
 * The audit database cut off (connections refused and terminated) while records arrive: the
 * consumer holds its batch, keeps the deliveries alive and writes it again once the database
 * is back. Nothing is lost, nothing stored twice, and a poison record in the held batch is
 * still dead-lettered rather than retried for ever.
 */
describe('audit: the database away while records arrive', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let audit: TestAudit;
  let caller: RawCaller;
  let db: Db;

  beforeAll(async () => {
    [nats, database] = await Promise.all([startNatsServer({ jetstream: true }), createTestDatabase('tk_audit_away')]);
    caller = await RawCaller.connect(nats.url);
    await (await jetstreamManager(caller.nc)).streams.add({ name: AUDIT_STREAM, subjects: [AUDIT_SUBJECT_FILTER] });
    audit = await startTestAudit(auditEnv(nats.url, database.url));
    db = new Db(database.url);
  });

  afterAll(async () => {
    if (database) await unblockDatabase(database.name).catch(() => undefined);
    await audit?.close();
    await caller?.close();
    await db?.close();
    await nats?.stop();
    await database?.drop();
  });

  const record = (overrides: Record<string, unknown> = {}) => ({
    eventId: randomUUID(),
    type: 'failed',
    tenant: 'away',
    connection: 'c1',
    provider: 'sandbox',
    version: 1,
    outcome: 'retryable',
    code: 'server_error',
    message: 'HTTP 500 server_error',
    at: new Date().toISOString(),
    replica: 'synthetic',
    ...overrides,
  });

  it(
    'holds the batch while the database is away and stores it once, with its dead letter, when it is back',
    { timeout: 60_000 },
    async () => {
      const js = jetstream(caller.nc);
      const publish = async (r: ReturnType<typeof record>) =>
        js.publish('audit.token.failed.away.c1', encodeJson(r), { msgID: r.eventId });
      const before = record();
      await publish(before);
      await waitFor(async () => (await db.count('SELECT count(*) AS n FROM audit_records')) === 1, {
        timeoutMs: 10_000,
        message: 'the first record',
      });

      await blockDatabase(database.name);
      const during = Array.from({ length: 20 }, () => record());
      const poison = record({ version: 2 ** 31 });
      for (const r of [...during.slice(0, 10), poison, ...during.slice(10)]) await publish(r);
      await waitFor(() => audit.logs.text().includes('storing audit records failed; retrying'), {
        timeoutMs: 15_000,
        message: 'the failed write',
      });
      expect(audit.consumer.stats.stored).toBe(1);

      await unblockDatabase(database.name);
      await waitFor(async () => (await db.count('SELECT count(*) AS n FROM audit_records')) === 1 + during.length, {
        timeoutMs: 30_000,
        intervalMs: 200,
        message: 'the held records stored',
      });
      const stored = await db.rows<{ event_id: string }>('SELECT event_id FROM audit_records');
      expect(stored.map((r) => r.event_id).sort()).toEqual([before, ...during].map((r) => r.eventId).sort());
      const dead = await db.rows<{ event_id: string; reason: string }>(
        'SELECT event_id, reason FROM audit_dead_letters',
      );
      expect(dead).toEqual([{ event_id: poison.eventId, reason: expect.stringMatching(/version/) }]);
      expect(audit.consumer.stats).toMatchObject({ stored: 1 + during.length, duplicates: 0, deadLettered: 1 });
      await waitFor(
        async () => {
          const info = await (
            await jetstreamManager(caller.nc)
          ).consumers.info(AUDIT_STREAM, audit.config.consumer.name);
          return info.num_ack_pending === 0 && info.num_pending === 0;
        },
        { timeoutMs: 10_000, message: 'every record acked' },
      );
    },
  );
});
