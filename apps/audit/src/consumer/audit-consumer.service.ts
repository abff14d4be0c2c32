import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { RetryBackoff, settleWithin, WakeableSleep } from '@tokenkeeper/common';
import {
  AckPolicy,
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { AUDIT_STREAM, AUDIT_SUBJECT_FILTER, type AuditRecord } from '@tokenkeeper/contracts';
import { AuditMetrics } from '../audit.metrics.js';
import { AUDIT_CONFIG, type AuditConfig } from '../config/audit-config.js';
import { AUDIT_NATS_CONNECTION } from '../nats.js';
import { AuditRecordRepository, type DeadLetter } from '../persistence/audit-record.repository.js';
import { columnProblem } from './audit-record.columns.js';
import { sanitizeAuditRecord } from './audit-record.sanitizer.js';

/**
 * Lifetime of a pull request. nats.js sends idle heartbeats at half of it and re-pulls after two
 * missed ones; its default (30 s) would leave the consumer idle for 30 s after a consumer leader
 * change on a NATS cluster, since the pull requests held by the old leader vanish with it.
 */
const PULL_EXPIRES_MS = 5_000;
/** With a partial batch in hand, how long to wait for another message before storing it. */
const BATCH_LINGER_MS = 20;

/** A batch taken apart: records to insert, and dead letters to keep instead. */
interface SortedBatch {
  pending: { record: AuditRecord; msg: JsMsg }[];
  dead: { msg: JsMsg; letter: DeadLetter }[];
}

/** The next iterator result, or undefined when none came within `ms`. */
async function lingerFor<T>(next: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  try {
    return await Promise.race([next, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Durable JetStream consumer of `TOKEN_AUDIT` that stores each record once.
 *
 * - Durable pull consumer (`AUDIT_CONSUMER_NAME`) with explicit acks; replicas of the
 *   audit app share it, each message going to one of them.
 * - Bounded in flight: the consumer's `max_ack_pending` (`AUDIT_MAX_IN_FLIGHT`) caps the
 *   records delivered and not yet acknowledged, whatever the client buffers.
 * - Store, then ack: records are inserted in batches with `ON CONFLICT (event_id) DO
 *   NOTHING` and acknowledged only after the insert committed. A crash before the ack
 *   means a redelivery, which the unique event id turns into a no-op: every record is
 *   stored exactly once.
 * - A record that fails validation, or that the table cannot hold (columnProblem, or one
 *   PostgreSQL refuses with a data error), goes to `audit_dead_letters` with the reason and
 *   its safe fields and is acked: one poison record never stops the others.
 *   A database failure keeps the batch (working()) and backs off.
 */
@Injectable()
export class AuditConsumer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(AuditConsumer.name);
  private running = false;
  private loop?: Promise<void>;
  private messages?: ConsumerMessages;
  private readonly idle = new WakeableSleep();
  private readonly retry: RetryBackoff;
  private storedTotal = 0;
  private duplicatesTotal = 0;
  private rejectedTotal = 0;
  private deadLetteredTotal = 0;

  constructor(
    @Inject(AUDIT_CONFIG) private readonly config: AuditConfig,
    @Inject(AUDIT_NATS_CONNECTION) private readonly nc: NatsConnection,
    private readonly repository: AuditRecordRepository,
    private readonly metrics: AuditMetrics,
  ) {
    this.retry = new RetryBackoff(this.logger, config.consumer.retryMaxMs, 'audit consumer running again');
  }

  onApplicationBootstrap(): void {
    this.running = true;
    this.loop = this.run();
  }

  /** Stops pulling, stores and acks what was already delivered, then returns. */
  async onApplicationShutdown(): Promise<void> {
    this.running = false;
    this.idle.wake();
    await this.messages?.close().catch(() => undefined);
    if (this.loop) await settleWithin(this.loop, this.config.shutdownGraceMs);
    this.logger.log({ msg: 'audit consumer stopped', ...this.stats });
  }

  /**
   * Counters since start: stored, skipped as already stored, refused by the schema, and
   * dead-lettered (refused ones included). The audit app has no metrics endpoint: these are
   * logged at shutdown and with every dead letter; `audit_dead_letters` holds the records.
   */
  get stats(): { stored: number; duplicates: number; rejected: number; deadLettered: number } {
    return {
      stored: this.storedTotal,
      duplicates: this.duplicatesTotal,
      rejected: this.rejectedTotal,
      deadLettered: this.deadLetteredTotal,
    };
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        const consumer = await this.ensureConsumer();
        if (!this.running) break;
        const messages = await consumer.consume({
          max_messages: Math.min(this.config.consumer.maxInFlight, 1_000),
          expires: PULL_EXPIRES_MS,
        });
        this.messages = messages;
        this.recovered();
        await this.drain(messages);
      } catch (error) {
        this.complain('audit consumer not ready; retrying', error);
        await this.idle.sleep(this.backoff());
      }
    }
  }

  /**
   * Reads delivered messages, in batches of what is already buffered (up to AUDIT_INSERT_BATCH_SIZE).
   * "Nothing more buffered" is `getPending() === 0`, or no message within BATCH_LINGER_MS: nats.js
   * counts a pull it queued among the messages as still pending after it ran, so after a burst that
   * ended with a re-pull (as after a consumer leader change) the counter stays above 0, and waiting
   * for it would hold the last records unstored and unacked until more arrive.
   */
  private async drain(messages: ConsumerMessages): Promise<void> {
    const iterator = messages[Symbol.asyncIterator]();
    let batch: JsMsg[] = [];
    // A rejection (the consumer went away) surfaces where it is awaited; until then it must not count as unhandled.
    const following = () => {
      const promise = iterator.next();
      promise.catch(() => undefined);
      return promise;
    };
    let next = following();
    for (;;) {
      const result = batch.length === 0 ? await next : await lingerFor(next, BATCH_LINGER_MS);
      if (result === undefined) {
        await this.store(batch);
        batch = [];
        continue;
      }
      if (result.done) break;
      batch.push(result.value);
      next = following();
      if (batch.length >= this.config.consumer.insertBatchSize || messages.getPending() === 0) {
        await this.store(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.store(batch);
  }

  /**
   * One batch: sorted into records to store and dead letters, written, then acked. While the
   * database is away the batch is held (and its deliveries kept alive) and written again;
   * at shutdown it is handed back to the stream instead.
   */
  private async store(batch: JsMsg[]): Promise<void> {
    const sorted = this.sort(batch);
    if (sorted.pending.length === 0 && sorted.dead.length === 0) return;
    for (;;) {
      try {
        const inserted = await this.insertRecords(sorted);
        await this.insertDeadLetters(sorted.dead);
        this.acknowledge(sorted, inserted);
        this.recovered();
        return;
      } catch (error) {
        this.complain('storing audit records failed; retrying', error);
        if (!(await this.holdForRetry(sorted))) return;
      }
    }
  }

  /** Sanitizes each message: a record to store, or a dead letter saying why not. */
  private sort(batch: JsMsg[]): SortedBatch {
    const sorted: SortedBatch = { pending: [], dead: [] };
    for (const msg of batch) {
      const result = sanitizeAuditRecord(msg.subject, msg.data);
      if (!result.ok) {
        this.rejectedTotal++;
        this.logger.warn({ msg: 'audit record refused', reason: result.reason, stream: AUDIT_STREAM, seq: msg.seq });
        sorted.dead.push({ msg, letter: refusedLetter(msg, result.reason) });
        continue;
      }
      if (result.dropped.length > 0) {
        this.logger.warn({
          msg: 'audit record carried fields outside the allow-list; they were dropped',
          fields: result.dropped.slice(0, 20),
          eventId: result.record.eventId,
        });
      }
      const problem = columnProblem(result.record);
      if (problem) sorted.dead.push({ msg, letter: deadLetterOf(msg, result.record, problem) });
      else sorted.pending.push({ record: result.record, msg });
    }
    return sorted;
  }

  /**
   * Inserts the pending records in one statement; rows already stored count as duplicates.
   * Should PostgreSQL refuse the batch's data (something columnProblem did not foresee), the
   * records are tried one by one and those it refuses become dead letters (kept in `sorted`,
   * so that a retry does not look for them again).
   */
  private async insertRecords(sorted: SortedBatch): Promise<number> {
    try {
      return await this.repository.insertMany(sorted.pending.map((p) => p.record));
    } catch (error) {
      if (!isDataError(error)) throw error;
    }
    let inserted = 0;
    const kept: SortedBatch['pending'] = [];
    for (const p of sorted.pending) {
      try {
        inserted += await this.repository.insertMany([p.record]);
        kept.push(p);
      } catch (single) {
        if (!isDataError(single)) throw single;
        sorted.dead.push({
          msg: p.msg,
          letter: deadLetterOf(p.msg, p.record, `rejected by PostgreSQL (SQLSTATE ${sqlState(single)})`),
        });
      }
    }
    sorted.pending = kept;
    return inserted;
  }

  private async insertDeadLetters(dead: SortedBatch['dead']): Promise<void> {
    await this.repository.insertDeadLetters(dead.map((d) => d.letter)).catch((error) => {
      if (!isDataError(error)) throw error;
      // Should a kept field itself be unstorable, keep where and why: never block on a dead letter.
      return this.repository.insertDeadLetters(
        dead.map(({ letter }) => ({ streamSeq: letter.streamSeq, subject: null, reason: letter.reason })),
      );
    });
  }

  /** Everything of the batch is stored: acked, counted, and each dead letter logged. */
  private acknowledge(sorted: SortedBatch, inserted: number): void {
    this.storedTotal += inserted;
    this.duplicatesTotal += sorted.pending.length - inserted;
    const newest = Math.max(...sorted.pending.map((p) => Date.parse(p.record.at)));
    if (Number.isFinite(newest)) this.metrics.ingestLag.set(Math.max(0, (Date.now() - newest) / 1000));
    for (const { msg } of sorted.pending) msg.ack();
    for (const { msg, letter } of sorted.dead) {
      // Stored in the dead-letter table: acked, so that it never holds up the records behind it.
      msg.ack();
      this.deadLetteredTotal++;
      this.logger.warn({
        msg: 'audit record dead-lettered',
        reason: letter.reason,
        eventId: letter.eventId,
        stream: AUDIT_STREAM,
        seq: letter.streamSeq,
        deadLettered: this.deadLetteredTotal,
      });
    }
  }

  /** After a failed write: false at shutdown (the batch was handed back), else true once it is time to retry. */
  private async holdForRetry(sorted: SortedBatch): Promise<boolean> {
    const held = [...sorted.pending.map((p) => p.msg), ...sorted.dead.map((d) => d.msg)];
    if (!this.running) {
      // Let another replica (or the next start) have them at once instead of after ack_wait.
      for (const msg of held) msg.nak();
      return false;
    }
    // Keep the deliveries alive while the database is away, rather than see them redelivered.
    for (const msg of held) msg.working();
    await this.idle.sleep(this.backoff());
    return true;
  }

  /** Creates the durable consumer, or brings its limits in line with the configuration. */
  private async ensureConsumer(): Promise<Consumer> {
    const { name, maxInFlight, ackWaitSeconds } = this.config.consumer;
    const jsm = await jetstreamManager(this.nc);
    const wanted = { max_ack_pending: maxInFlight, ack_wait: nanos(ackWaitSeconds * 1000) };
    try {
      const info = await jsm.consumers.info(AUDIT_STREAM, name);
      if (info.config.max_ack_pending !== wanted.max_ack_pending || info.config.ack_wait !== wanted.ack_wait) {
        await jsm.consumers.update(AUDIT_STREAM, name, wanted);
      }
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound)) throw error;
      await jsm.consumers.add(AUDIT_STREAM, {
        durable_name: name,
        description: 'Tokenkeeper audit app: stores every audit record once',
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: AUDIT_SUBJECT_FILTER,
        max_deliver: -1,
        ...wanted,
      });
      this.logger.log({ msg: 'audit consumer created', stream: AUDIT_STREAM, consumer: name });
    }
    return jetstream(this.nc).consumers.get(AUDIT_STREAM, name);
  }

  private backoff(): number {
    return this.retry.next();
  }

  private complain(msg: string, error: unknown): void {
    const stream = error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
    this.retry.complain({
      msg: stream ? `${msg}: the ${AUDIT_STREAM} stream does not exist yet (the refresher creates it)` : msg,
      error: (error as Error)?.message,
    });
  }

  private recovered(): void {
    this.retry.recovered();
  }
}

/**
 * SQLSTATE classes that mean "this row", not "this database": 22 data exception (value out
 * of range, bad datetime), 23 integrity (a NOT NULL), 54 program limit (an index row too
 * big). Anything else (connection lost, admin shutdown, …) is retried.
 */
function isDataError(error: unknown): boolean {
  return /^(22|23|54)/.test(sqlState(error));
}

function sqlState(error: unknown): string {
  const code =
    (error as { code?: unknown; driverError?: { code?: unknown } })?.code ??
    (error as { driverError?: { code?: unknown } })?.driverError?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : 'unknown';
}

/** A subject is kept only when it is plain printable ASCII of a sane length (NATS allows more). */
function safeSubject(subject: string): string | null {
  return /^[\x21-\x7e]{1,512}$/.test(subject) ? subject : null;
}

function refusedLetter(msg: JsMsg, reason: string): DeadLetter {
  // The payload failed validation: none of its fields is known to be safe, so none is kept.
  return { streamSeq: msg.seq, subject: safeSubject(msg.subject), reason: `refused: ${reason}` };
}

/** The record's validated identifying fields; never its message. */
function deadLetterOf(msg: JsMsg, record: AuditRecord, reason: string): DeadLetter {
  const letter: DeadLetter = {
    streamSeq: msg.seq,
    subject: safeSubject(msg.subject),
    reason,
    eventId: record.eventId,
    type: record.type,
    tenant: record.tenant,
    connection: record.connection,
    provider: record.provider,
    version: String(record.version),
    at: record.at,
    replica: record.replica,
  };
  if (record.outcome !== undefined) letter.outcome = record.outcome;
  if (record.code !== undefined) letter.code = record.code;
  return letter;
}
