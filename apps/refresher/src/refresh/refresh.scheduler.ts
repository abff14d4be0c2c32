import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { CredentialRepository } from '../persistence/credential.repository.js';
import { RefreshService } from './refresh.service.js';

/**
 * Finds due credentials and refreshes them before they expire. Each tick claims work
 * bucket by bucket (one index range scan each, single-shard under Citus) up to the free
 * capacity, and per provider up to its free request slots; a tick that claimed anything
 * may have left a backlog, so the next tick follows at once.
 */
@Injectable()
export class RefreshScheduler implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(RefreshScheduler.name);
  private readonly inFlight = new Set<Promise<unknown>>();
  private running = false;
  private timer?: NodeJS.Timeout;
  private loop?: Promise<void>;
  private nextBucket = 0;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: CredentialRepository,
    private readonly refresher: RefreshService,
  ) {}

  onApplicationBootstrap(): void {
    this.running = true;
    this.schedule(0);
  }

  /**
   * Stops claiming and waits for the claim in progress, whose credentials are handed to
   * RefreshService. Finishing (or giving back) the leased work is RefreshService.drain's
   * job; GracefulShutdown calls both, in that order, before NATS and the pool close.
   */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.loop?.catch(() => undefined);
  }

  /** Normally a no-op by now: GracefulShutdown stopped the scheduler in beforeApplicationShutdown. */
  async onApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  get activeRefreshes(): number {
    return this.inFlight.size;
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.loop = this.tick()
        .then((backlog) => this.schedule(backlog ? 0 : this.config.refresh.claimIntervalMs))
        .catch((error) => {
          this.logger.warn({ msg: 'claiming due credentials failed; retrying', error: (error as Error).message });
          this.schedule(Math.max(1_000, this.config.refresh.claimIntervalMs));
        });
    }, delayMs);
  }

  /** Returns true when there is probably more due work right now. */
  private async tick(): Promise<boolean> {
    const { maxInFlight, claimBatchSize, leaseSeconds } = this.config.refresh;
    const buckets = this.repository.bucketCount;
    let backlog = false;
    for (let i = 0; i < buckets && this.running; i++) {
      const capacity = maxInFlight - this.inFlight.size;
      if (capacity <= 0) return true;
      const bucket = this.nextBucket;
      this.nextBucket = (this.nextBucket + 1) % buckets;
      const limit = Math.min(capacity, claimBatchSize);
      // No more per provider than it has free request slots: claimed work is sent at once,
      // with its whole REFRESH_TIMEOUT_MS, instead of waiting in a queue while its lease ages.
      const claimed = await this.repository.claimDue(bucket, limit, this.config.replicaId, leaseSeconds, this.refresher.claimRoom());
      // The room per provider may hold a claim below `limit` with more due behind it.
      if (claimed.length > 0) backlog = true;
      for (const leased of claimed) {
        const work = this.refresher
          .refreshLeased(leased)
          .catch((error) => {
            this.logger.error({ msg: 'refresh crashed; the lease will expire and the credential be retried', tenant: leased.credential.tenant, connection: leased.credential.connection, error: (error as Error).message });
          })
          .finally(() => this.inFlight.delete(work));
        this.inFlight.add(work);
      }
    }
    return backlog;
  }
}
