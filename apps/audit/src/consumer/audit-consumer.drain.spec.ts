import { AuditMetrics } from '../audit.metrics.js';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { waitFor } from '@tokenkeeper/testing';
import { describe, expect, it, vi } from 'vitest';
import { type AuditConfig, loadAuditConfig } from '../config/audit-config.js';
import type { AuditRecordRepository } from '../persistence/audit-record.repository.js';
import { AuditConsumer } from './audit-consumer.service.js';

const record = (i: number) => ({
  eventId: `3b241101-e2bb-4255-8caf-4136c566a9${String(i).padStart(2, '0')}`,
  type: 'refreshed',
  tenant: 'acme',
  connection: 'github',
  provider: 'github',
  version: i + 2,
  at: '2026-01-05T10:00:00.000Z',
  replica: 'refresher-1',
});

function jsMsg(i: number): JsMsg & { ack: ReturnType<typeof vi.fn> } {
  return {
    subject: 'audit.token.refreshed.acme.github',
    data: new TextEncoder().encode(JSON.stringify(record(i))),
    seq: i + 1,
    ack: vi.fn(),
  } as never;
}

/**
 * Delivers `msgs` and then waits, like a consume() after the end of a burst, while
 * getPending() overcounts by one as nats.js's does once a queued pull ran before the messages.
 */
function overcountingMessages(msgs: JsMsg[]): ConsumerMessages & { end(): void } {
  let end!: () => void;
  const ended = new Promise<void>((resolve) => (end = resolve));
  let left = msgs.length;
  return {
    getPending: () => left + 1,
    end,
    async *[Symbol.asyncIterator]() {
      for (const msg of msgs) {
        left--;
        yield msg;
      }
      await ended;
    },
  } as never;
}

describe('AuditConsumer drain', () => {
  it('stores and acks the last records of a burst although the iterator still reports one pending', async () => {
    const config: AuditConfig = loadAuditConfig({ NODE_ENV: 'test' });
    const inserted: unknown[] = [];
    const repository = {
      insertMany: vi.fn(async (records: unknown[]) => {
        inserted.push(...records);
        return records.length;
      }),
      insertDeadLetters: vi.fn(async () => undefined),
    } as unknown as AuditRecordRepository;
    const consumer = new AuditConsumer(config, {} as NatsConnection, repository, new AuditMetrics());
    const msgs = [jsMsg(0), jsMsg(1), jsMsg(2)];
    const messages = overcountingMessages(msgs);
    const drained = (consumer as unknown as { drain(m: ConsumerMessages): Promise<void> }).drain(messages);

    await waitFor(() => inserted.length === 3 || undefined, { timeoutMs: 2_000, message: 'the burst to be stored' });
    for (const msg of msgs) expect(msg.ack).toHaveBeenCalledTimes(1);
    messages.end();
    await drained;
    expect(consumer.stats.stored).toBe(3);
  });
});
