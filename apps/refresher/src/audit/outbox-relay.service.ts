import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { RetryBackoff, settleWithin, WakeableSleep } from '@tokenkeeper/common';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AUDIT_SUBJECT_PREFIX, encodeJson, pickAuditFields } from '@tokenkeeper/contracts';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { NATS_CONNECTION } from '../nats/nats-connection.js';
import { type OutboxRelaySession, OutboxRepository, type OutboxRow } from '../persistence/outbox.repository.js';
import { AuditStreamService } from './audit-stream.service.js';

export { OUTBOX_RELAY_LOCK_KEY } from '../persistence/outbox.repository.js';

export interface RelayBatchResult {
  /** Rows read from the outbox. */
  read: number;
  /** Rows acknowledged by JetStream and marked published. */
  published: number;
  /** Rows whose publish failed; they stay pending and are retried after a backoff. */
  failed: number;
}

/**
 * Publishes the outbox to JetStream: at least once, in order per credential, one
 * replica at a time.
 *
 * Design: **one active relay**, elected with a PostgreSQL session advisory lock held
 * on a dedicated connection; the other replicas stand by, retrying the lock every
 * `AUDIT_RELAY_STANDBY_POLL_MS`, and take over when the holder dies (its session ends,
 * so PostgreSQL releases the lock). The active relay reads and marks rows on that same
 * connection, so once it loses the connection it can no longer mark anything. Chosen
 * over per-row `FOR UPDATE SKIP LOCKED` claiming because ordering per credential then
 * needs a "no older pending row of this credential" check on every claim, and a claim
 * transaction held open across the JetStream round trip; one pipelined publisher
 * already does tens of thousands of records per second, far above the rate at which
 * refreshes commit, so the single relay costs no throughput that matters.
 *
 * Ordering: rows of one credential are written under that credential's row lock, so
 * their ids follow their commit order, and a reader that sees a row also sees every
 * older row of the same credential. A batch is read in id order and split into one
 * chain per credential; chains run in parallel (up to `AUDIT_RELAY_MAX_IN_FLIGHT`),
 * and within a chain a record is sent only after JetStream acknowledged the previous
 * one. A failure stops its chain, so a later record never overtakes an earlier one.
 *
 * The SQL (lock, reads, marks, purge) is OutboxRepository's; this class is the loop.
 *
 * Exactly-once bookkeeping: rows are marked published in one UPDATE after their acks.
 * A crash between ack and UPDATE republishes them with the same `Nats-Msg-Id` (the
 * row's record id, random and never on a core event): JetStream drops the copy within
 * its dedupe window, and the audit app's unique record id drops it after that.
 */
@Injectable()
export class OutboxRelay implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(OutboxRelay.name);
  private readonly js: JetStreamClient;
  private session?: OutboxRelaySession;
  private active = false;
  private running = false;
  private loop?: Promise<void>;
  private readonly idle = new WakeableSleep();
  private natsUp = true;
  private readonly retry: RetryBackoff;
  private lastPurge = 0;
  private publishedTotal = 0;
  private foreignDuplicates = 0;
  /**
   * Record ids this process had acked but not yet marked published (cleared once marked):
   * a duplicate ack for one of these is our own retry, not someone else's message.
   */
  private readonly unmarked = new Set<string>();

  /**
   * Shutdown order: GracefulShutdown finishes the refreshes in flight before any
   * onApplicationShutdown hook runs; this relay depends on AuditStreamService (which
   * depends on the NATS connection), and Nest shuts providers down from the most
   * dependent to the least, so its final drain runs before NatsLifecycle drains the
   * connection, and sees every record the finished refreshes committed.
   */
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(NATS_CONNECTION) private readonly nc: NatsConnection,
    private readonly stream: AuditStreamService,
    private readonly outbox: OutboxRepository,
  ) {
    this.js = jetstream(nc, { timeout: config.audit.relay.publishTimeoutMs });
    this.retry = new RetryBackoff(this.logger, config.audit.relay.backoffMaxMs, 'outbox relay publishing again');
  }

  onApplicationBootstrap(): void {
    this.running = true;
    void this.watchNats();
    this.loop = this.run();
  }

  /** Stops the loop, then publishes what is still pending (bounded by AUDIT_RELAY_DRAIN_MS) and steps down. */
  async onApplicationShutdown(): Promise<void> {
    this.running = false;
    this.idle.wake();
    // Bounded: a query to an unreachable database would otherwise hold the shutdown up.
    const settled = this.loop ? await settleWithin(this.loop, this.config.audit.relay.drainMs) : true;
    if (!settled) {
      await this.stepDown();
      return;
    }
    if (this.stream.isReady && this.natsUp && !this.nc.isClosed()) {
      const deadline = Date.now() + this.config.audit.relay.drainMs;
      try {
        // A standby stopping beside the active relay (a deployment stops every replica at
        // once) may have just committed records the active one will not see before it steps
        // down itself: while records wait, it waits for the lock, bounded by the drain time.
        // Beside an active relay that keeps running, the wait ends as soon as that one has
        // published them.
        while (!this.active && Date.now() < deadline && (await this.outbox.backlog()) > 0) {
          if (!(await this.tryLead())) await new Promise((resolve) => setTimeout(resolve, 50));
        }
        while (this.active && Date.now() < deadline) {
          const result = await this.publishBatch();
          if (result.read === 0 || result.failed > 0) break;
        }
      } catch (error) {
        this.logger.warn({
          msg: 'outbox drain at shutdown stopped; the next active relay publishes the rest',
          error: (error as Error).message,
        });
      }
    }
    await this.stepDown();
  }

  /** True while this replica holds the relay lock. */
  get isActive(): boolean {
    return this.active;
  }

  /** Records published by this replica since it started. */
  get published(): number {
    return this.publishedTotal;
  }

  /** Records committed but not yet acknowledged by JetStream (for the outbox backlog metric). */
  backlog(): Promise<number> {
    return this.outbox.backlog();
  }

  private async run(): Promise<void> {
    const { standbyPollMs, intervalMs, batchSize } = this.config.audit.relay;
    while (this.running) {
      let pause: number;
      // Errors of the stream check are NATS trouble; any other error here comes from PostgreSQL.
      let phase: 'database' | 'stream' = 'database';
      try {
        if (!(await this.tryLead())) {
          pause = standbyPollMs;
        } else if (!this.natsUp) {
          pause = this.backoff();
        } else {
          phase = 'stream';
          await this.stream.ensure();
          phase = 'database';
          const result = await this.publishBatch();
          if (result.failed > 0) {
            pause = this.backoff();
            this.complain('JetStream did not acknowledge audit records; retrying with backoff', {
              failed: result.failed,
            });
          } else {
            this.recovered();
            pause = result.read === batchSize ? 0 : intervalMs;
          }
          await this.purgeOld();
        }
      } catch (error) {
        pause = this.backoff();
        // After a database error the lock may be gone with the session: step down and re-elect.
        if (phase === 'database') await this.stepDown();
        this.complain(
          phase === 'database'
            ? 'outbox relay: database error; stepping down and retrying'
            : 'audit stream unavailable; retrying with backoff',
          { error: (error as Error).message },
        );
      }
      if (pause > 0 && this.running) await this.idle.sleep(pause);
    }
  }

  /** Publishes one batch of pending rows in id order and marks the acknowledged ones (active relay only). */
  private async publishBatch(): Promise<RelayBatchResult> {
    const session = this.session;
    if (!session || !this.active) return { read: 0, published: 0, failed: 0 };
    const { batchSize, maxInFlight, publishTimeoutMs } = this.config.audit.relay;
    const rows = await session.readPending(batchSize);
    if (rows.length === 0) return { read: 0, published: 0, failed: 0 };

    const chains = new Map<string, OutboxRow[]>();
    for (const row of rows) {
      const key = `${row.tenant}/${row.connection}`;
      const chain = chains.get(key);
      if (chain) chain.push(row);
      else chains.set(key, [row]);
    }
    const queue = [...chains.values()];
    const acked: string[] = [];
    let failed = 0;
    let lastError: Error | undefined;
    const worker = async () => {
      for (let chain = queue.shift(); chain; chain = queue.shift()) {
        for (let i = 0; i < chain.length; i++) {
          const row = chain[i];
          if (!row.subject.startsWith(`${AUDIT_SUBJECT_PREFIX}.`)) {
            // Cannot happen with rows the repository writes (the subject is built in SQL from
            // validated names); should one appear, retrying it forever would stall the relay.
            this.logger.error({
              msg: 'outbox row with a foreign subject skipped, not published',
              id: row.id,
              eventId: row.event_id,
            });
            acked.push(row.id);
            continue;
          }
          try {
            // Only the allow-listed fields go out, whatever the row holds. The message id is the
            // row's secret record id, never the event id core subscribers see.
            const record = { ...pickAuditFields(row.payload), recordId: row.record_id };
            const ack = await this.js.publish(row.subject, encodeJson(record), {
              msgID: row.record_id,
              timeout: publishTimeoutMs,
            });
            if (ack.duplicate && !this.unmarked.has(row.record_id)) this.foreignDuplicate(row);
            this.unmarked.add(row.record_id);
            acked.push(row.id);
          } catch (error) {
            // The rest of this credential's chain waits for the next attempt, so nothing overtakes it.
            failed += chain.length - i;
            lastError = error as Error;
            break;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(maxInFlight, queue.length) }, worker));
    if (acked.length > 0) {
      await session.markPublished(acked);
      this.publishedTotal += acked.length;
      this.unmarked.clear();
    }
    if (failed > 0) {
      this.stream.invalidate();
      this.logger.debug?.({ msg: 'audit publish failed', failed, error: lastError?.message });
    }
    return { read: rows.length, published: acked.length, failed };
  }

  /**
   * JetStream already held a message under this row's record id, and this process has not
   * published it before. The record id is random and shown to nobody, so the only honest
   * cause is a relay that published the row and died (or lost its lock) before marking it;
   * anything else means someone published under our id, which the id's secrecy should make
   * impossible. Either way the row is marked: republishing cannot displace what the stream
   * holds under that id, and retrying forever would stall the relay. Logged as an error so
   * the second cause is seen; after a takeover a few of these are expected.
   */
  private foreignDuplicate(row: OutboxRow): void {
    this.foreignDuplicates++;
    this.logger.error({
      msg: 'JetStream reports an audit record as a duplicate that this relay never published: expected only right after a relay crash or takeover; otherwise someone published under our record id',
      recordId: row.record_id,
      eventId: row.event_id,
      subject: row.subject,
      foreignDuplicates: this.foreignDuplicates,
    });
  }

  /** Holds or tries to take the relay lock; keeps a standby connection open between tries. */
  private async tryLead(): Promise<boolean> {
    if (this.active) return true;
    if (!this.session) {
      let opened: OutboxRelaySession | undefined;
      // Declared first, not `const`: the error callback may run before the session resolves.
      // eslint-disable-next-line prefer-const
      opened = await this.outbox.openRelaySession((error) => {
        this.logger.warn({ msg: 'outbox relay connection failed', error: error.message });
        if (opened && this.session === opened) {
          this.session = undefined;
          this.active = false;
        }
      });
      this.session = opened;
    }
    this.active = await this.session.tryLead();
    if (this.active)
      this.logger.log({ msg: 'this replica is now the active outbox relay', replica: this.config.replicaId });
    return this.active;
  }

  /** Releases the lock by closing its session; safe when not holding it. */
  private async stepDown(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    this.active = false;
    if (session) await session.close();
  }

  /** Deletes old published rows (AUDIT_OUTBOX_RETENTION_HOURS), at most once a minute. */
  private async purgeOld(): Promise<void> {
    if (!this.session || Date.now() - this.lastPurge < 60_000) return;
    this.lastPurge = Date.now();
    await this.session.purgePublished(this.config.audit.relay.outboxRetentionHours);
  }

  private backoff(): number {
    return this.retry.next();
  }

  private complain(msg: string, fields: Record<string, unknown>): void {
    this.retry.complain({ msg, ...fields });
  }

  private recovered(): void {
    this.retry.recovered();
  }

  /** Pauses publishing while the connection is down instead of piling requests into its buffer. */
  private async watchNats(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'disconnect') this.natsUp = false;
      else if (status.type === 'reconnect') {
        this.natsUp = true;
        this.idle.wake();
      }
    }
  }
}
