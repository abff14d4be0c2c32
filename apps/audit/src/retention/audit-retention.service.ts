import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { settleWithin, WakeableSleep } from '@tokenkeeper/common';
import { AUDIT_CONFIG, type AuditConfig } from '../config/audit-config.js';
import { AuditRecordRepository } from '../persistence/audit-record.repository.js';

/** Between two delete batches: lets the consumer's inserts and the queries in, and autovacuum keep up. */
export const RETENTION_PAUSE_MS = 200;
const DAY_MS = 86_400_000;

/**
 * Deletes audit records older than AUDIT_RETENTION_DAYS, once at start and then every
 * AUDIT_RETENTION_INTERVAL_MINUTES. Each statement removes at most AUDIT_RETENTION_BATCH_SIZE
 * rows and commits on its own, with a pause between them, so no lock is held for long and a
 * large first sweep (years of records) never blocks ingestion. Every replica may run it: two
 * sweeps at once only delete disjoint or already-deleted rows. Off (0 days) by default.
 */
@Injectable()
export class AuditRetention implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(AuditRetention.name);
  private readonly pause = new WakeableSleep();
  private stopping = false;
  private loop?: Promise<void>;

  constructor(
    @Inject(AUDIT_CONFIG) private readonly config: AuditConfig,
    private readonly repository: AuditRecordRepository,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.retention.days === 0) return;
    this.loop = this.run();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopping = true;
    this.pause.wake();
    if (this.loop) await settleWithin(this.loop, this.config.shutdownGraceMs);
  }

  /** One sweep: every record older than the limit at `now`, batch by batch; returns how many were deleted. */
  async sweep(now = new Date()): Promise<number> {
    const cutoff = new Date(now.getTime() - this.config.retention.days * DAY_MS);
    const { batchSize } = this.config.retention;
    let deleted = 0;
    for (;;) {
      const n = await this.repository.deleteOlderThan(cutoff, batchSize);
      deleted += n;
      if (n < batchSize || this.stopping) break;
      await this.pause.sleep(RETENTION_PAUSE_MS);
    }
    if (deleted > 0)
      this.logger.log({ msg: 'audit records past retention deleted', deleted, before: cutoff.toISOString() });
    return deleted;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.sweep();
      } catch (error) {
        // The next interval tries again; ingestion does not depend on it.
        this.logger.warn({ msg: 'audit retention sweep failed', error: (error as Error).message });
      }
      if (!this.stopping) await this.pause.sleep(this.config.retention.intervalMs);
    }
  }
}
