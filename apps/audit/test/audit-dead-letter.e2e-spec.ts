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
import { RawCaller } from '../../refresher/test/refresher.harness.js';
import { auditEnv, Db, startTestAudit, type TestAudit } from './audit.harness.js';

/**
 * Records that pass the schema but cannot be stored (a version beyond the
 * integer column, a timestamp PostgreSQL rejects) used to fail the batch insert forever,
 * and every later record waited behind them. Published into TOKEN_AUDIT between good
 * records: the good ones are stored, the bad ones land in the dead-letter table (reason,
 * subject, safe fields; no message) and are acked.
 */
describe('audit: poison records go to the dead-letter table', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let audit: TestAudit;
  let caller: RawCaller;
  let db: Db;

  beforeAll(async () => {
    [nats, database] = await Promise.all([startNatsServer({ jetstream: true }), createTestDatabase('tk_dead')]);
    caller = await RawCaller.connect(nats.url);
    // The stream as the refresher creates it (subjects), without a refresher.
    await (await jetstreamManager(caller.nc)).streams.add({ name: AUDIT_STREAM, subjects: [AUDIT_SUBJECT_FILTER] });
    audit = await startTestAudit(auditEnv(nats.url, database.url, { AUDIT_INSERT_BATCH_SIZE: '50' }));
    db = new Db(database.url);
  });

  afterAll(async () => {
    await audit?.close();
    await caller?.close();
    await db?.close();
    await nats?.stop();
    await database?.drop();
  });

  const record = (overrides: Record<string, unknown> = {}) => ({
    eventId: randomUUID(),
    type: 'failed',
    tenant: 'poison',
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

  it('stores every good record, dead-letters the bad ones and acks them all', { timeout: 60_000 }, async () => {
    const secretish = 'refresh_token=rt_must_not_be_kept_anywhere';
    const bad = [
      { why: /version/, r: record({ version: 2 ** 40, message: secretish }) },
      { why: /version/, r: record({ version: 2 ** 31 }) },
      { why: /\bat\b/, r: record({ at: '0000-01-01T00:00:00Z', message: secretish }) },
      { why: /\bat\b/, r: record({ at: '0000-12-31T23:59:59.999+00:00' }) },
    ];
    const good = [
      record({ version: 0 }),
      record({ version: 2 ** 31 - 1 }),
      record({ at: '0001-01-01T00:00:00Z' }),
      record(),
      record(),
      record(),
    ];
    // Interleaved, bad first: the good records behind a bad one must not wait for it.
    const stream = [
      bad[0]!.r,
      good[0]!,
      bad[1]!.r,
      good[1]!,
      bad[2]!.r,
      good[2]!,
      bad[3]!.r,
      good[3]!,
      good[4]!,
      good[5]!,
    ];
    const js = jetstream(caller.nc);
    for (const r of stream)
      await js.publish(`audit.token.failed.poison.c1`, encodeJson(r), { msgID: r.eventId as string });

    await waitFor(async () => (await db.count('SELECT count(*) AS n FROM audit_records')) === good.length, {
      timeoutMs: 20_000,
      intervalMs: 100,
      message: 'the good records to be stored',
    });
    const stored = await db.rows<{ event_id: string; version: number }>(
      'SELECT event_id, version FROM audit_records ORDER BY event_id',
    );
    expect(stored.map((r) => r.event_id).sort()).toEqual(good.map((r) => r.eventId).sort());

    const dead = await waitFor(
      async () => {
        const rows = await db.rows('SELECT * FROM audit_dead_letters ORDER BY stream_seq').catch(() => []);
        return rows.length === bad.length ? rows : undefined;
      },
      { timeoutMs: 10_000, message: 'the bad records in the dead-letter table' },
    );
    for (const [i, { why, r }] of bad.entries()) {
      const row = dead.find((d: any) => d.event_id === r.eventId);
      expect(row, `bad record ${i}`).toMatchObject({
        subject: 'audit.token.failed.poison.c1',
        tenant: 'poison',
        connection: 'c1',
        type: 'failed',
      });
      expect(row.reason).toMatch(why);
      expect(Number(row.stream_seq)).toBeGreaterThan(0);
    }
    expect(JSON.stringify(dead)).not.toContain('rt_must_not_be_kept');
    expect(audit.consumer.stats).toMatchObject({ stored: good.length, deadLettered: bad.length });

    // Everything acked: nothing pending or waiting for redelivery.
    const info = await (await jetstreamManager(caller.nc)).consumers.info(AUDIT_STREAM, audit.config.consumer.name);
    await waitFor(
      async () => {
        const now = await (await jetstreamManager(caller.nc)).consumers.info(AUDIT_STREAM, audit.config.consumer.name);
        return now.num_ack_pending === 0 && now.num_pending === 0;
      },
      { timeoutMs: 10_000, message: 'every record acked' },
    );
    expect(info.delivered.stream_seq).toBeGreaterThanOrEqual(stream.length);

    // And the consumer keeps going.
    const later = record();
    await js.publish('audit.token.failed.poison.c1', encodeJson(later), { msgID: later.eventId });
    await waitFor(
      async () =>
        (await db.count('SELECT count(*) AS n FROM audit_records WHERE event_id = $1', [later.eventId])) === 1,
      { timeoutMs: 10_000, message: 'a later record' },
    );
  });
});
