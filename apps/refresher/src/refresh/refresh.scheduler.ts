import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { CredentialRepository } from '../persistence/credential.repository.js';
import { RefreshService } from './refresh.service.js';

/**
 * Finds due credentials and refreshes them before they expire. Each tick reads which shard
 * buckets hold due work (one statement), then claims from those bucket by bucket (one
 * index range scan each, single-shard under Citus) up to the free
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
  /** Buckets last found to hold due work and not yet claimed empty (see tick). */
  private dueBuckets = new Set<number>();
  private dueReadAt = 0;
  /** Set while the loop waits for room (roomForABatch): told of each finished refresh, and of stop(). */
  private onFinished?: () => void;
  private onStop?: () => void;

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
    this.onStop?.();
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
        .then(async (backlog) => {
          if (backlog) await this.roomForABatch();
          this.schedule(backlog ? 0 : this.config.refresh.claimIntervalMs);
        })
        .catch((error) => {
          this.logger.warn({ msg: 'claiming due credentials failed; retrying', error: (error as Error).message });
          this.schedule(Math.max(1_000, this.config.refresh.claimIntervalMs));
        });
    }, delayMs);
  }

  /**
   * With a backlog, the next claim waits until a quarter of the work in flight has finished
   * (or CLAIM_INTERVAL_MS passed, or nothing is left in flight): claiming the moment one
   * slot frees costs a statement (a transaction, a WAL flush) per refresh, claiming a few
   * at a time costs a fraction of one, and the slots left idle meanwhile are few and brief.
   * Claimed work is still sent at once, so the refresh policy's "claimed only as fast as it can be
   * sent" holds.
   */
  private async roomForABatch(): Promise<void> {
    const want = Math.ceil(this.inFlight.size / 4);
    if (want === 0 || !this.running) return;
    let freed = 0;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.config.refresh.claimIntervalMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.onFinished = () => {
        if (++freed >= want || this.inFlight.size === 0 || !this.running) done();
      };
      this.onStop = done;
    });
    this.onFinished = undefined;
    this.onStop = undefined;
  }

  /** Returns true when there is probably more due work right now. */
  private async tick(): Promise<boolean> {
    const { maxInFlight, claimBatchSize, leaseSeconds } = this.config.refresh;
    const buckets = this.repository.bucketCount;
    let backlog = false;
    if (maxInFlight - this.inFlight.size <= 0) return true;
    // Only buckets with due work are claimed from: one read instead of a claim per empty
    // bucket. The buckets found due stay so until a claim in them comes back empty, so a
    // backlog is worked off without reading them again before every claim; they are read
    // again at least every CLAIM_INTERVAL_MS, so a bucket that became due meanwhile is not
    // left waiting behind a long backlog elsewhere.
    if (this.dueBuckets.size === 0 || Date.now() - this.dueReadAt >= this.config.refresh.claimIntervalMs) {
      this.dueReadAt = Date.now();
      this.dueBuckets = new Set(await this.repository.dueBuckets());
    }
    const due = this.dueBuckets;
    for (let i = 0; i < buckets && this.running && due.size > 0; i++) {
      const capacity = maxInFlight - this.inFlight.size;
      if (capacity <= 0) return true;
      const bucket = this.nextBucket;
      this.nextBucket = (this.nextBucket + 1) % buckets;
      if (!due.has(bucket)) continue;
      const limit = Math.min(capacity, claimBatchSize);
      // No more per provider than it has free request slots: claimed work is sent at once,
      // with its whole REFRESH_TIMEOUT_MS, instead of waiting in a queue while its lease ages.
      const claimed = await this.repository.claimDue(
        bucket,
        limit,
        this.config.replicaId,
        leaseSeconds,
        this.refresher.claimRoom(),
      );
      // The room per provider may hold a claim below `limit` with more due behind it.
      if (claimed.length > 0) backlog = true;
      else due.delete(bucket);
      for (const leased of claimed) {
        const work = this.refresher
          .refreshLeased(leased)
          .catch((error) => {
            this.logger.error({
              msg: 'refresh crashed; the lease will expire and the credential be retried',
              tenant: leased.credential.tenant,
              connection: leased.credential.connection,
              error: (error as Error).message,
            });
          })
          .finally(() => {
            this.inFlight.delete(work);
            this.onFinished?.();
          });
        this.inFlight.add(work);
      }
      // Every provider with work here is now at its limit: the other buckets could only
      // yield rows of providers not seen yet (one each), at a statement per bucket; they
      // come in turn in the next ticks (nextBucket goes round), not in this one.
      const room = Object.values(this.refresher.claimRoom().perProvider);
      if (claimed.length > 0 && room.length > 0 && room.every((n) => n <= 0)) return true;
    }
    return backlog;
  }
}
