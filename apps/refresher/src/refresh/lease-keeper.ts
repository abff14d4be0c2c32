import { Logger } from '@nestjs/common';
import type { CredentialKey } from '@tokenkeeper/contracts';
import type { Clock } from '../domain/clock.js';
import type { Lease } from '../domain/credential.js';
import type { CredentialRepository } from '../persistence/credential.repository.js';

/** Extensions per lease period: two may fail (a database blip) before the lease runs out. */
const BEATS_PER_LEASE = 3;

/**
 * Keeps one lease alive while its work runs (queued for a provider slot, requesting, or
 * retrying the commit), with a fenced extension every third of the lease. `lost` fires when
 * this replica can no longer be sure it holds the lease: an extension found it taken over,
 * or the local deadline (less `safetyMs`) came without a confirmed extension. A token request
 * must stop then, because another replica may claim the credential once the lease expires in
 * the database.
 */
export class LeaseKeeper {
  private readonly logger = new Logger(LeaseKeeper.name);
  private readonly lostController = new AbortController();
  private beat?: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;
  private stopped = false;
  private extending?: Promise<'extended' | 'lost' | 'error'>;

  constructor(
    private readonly repository: CredentialRepository,
    private readonly clock: Clock,
    private readonly key: CredentialKey,
    public lease: Lease,
    /** Local deadline, epoch ms from the injected clock. */
    public untilMs: number,
    private readonly leaseSeconds: number,
    private readonly safetyMs: number,
  ) {}

  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  start(): this {
    this.armWatchdog();
    this.scheduleBeat();
    return this;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.beat);
    clearTimeout(this.watchdog);
  }

  /** A new lease on the same credential (taken again after ours lapsed) replaces ours. */
  adopt(lease: Lease, untilMs: number): void {
    this.lease = lease;
    this.untilMs = untilMs;
    this.armWatchdog();
  }

  /** Milliseconds left before the local deadline, less the safety margin. */
  get remainingMs(): number {
    return this.untilMs - this.safetyMs - this.clock.now();
  }

  /** One fenced extension (shared if one is already running). */
  extend(): Promise<'extended' | 'lost' | 'error'> {
    this.extending ??= this.doExtend().finally(() => (this.extending = undefined));
    return this.extending;
  }

  private async doExtend(): Promise<'extended' | 'lost' | 'error'> {
    const lease = this.lease;
    try {
      const until = await this.repository.extendLease(this.key, lease, this.leaseSeconds);
      if (this.lease !== lease) return 'extended'; // adopted meanwhile: the new lease is fresh
      if (until === null) {
        this.lostController.abort(new Error('lease taken over'));
        return 'lost';
      }
      this.untilMs = Math.max(this.untilMs, until);
      this.armWatchdog();
      return 'extended';
    } catch (error) {
      this.logger.warn({
        msg: 'lease extension failed; retrying',
        tenant: this.key.tenant,
        connection: this.key.connection,
        error: (error as Error).message,
      });
      return 'error';
    }
  }

  private scheduleBeat(): void {
    if (this.stopped) return;
    const every = Math.max(200, Math.floor((this.leaseSeconds * 1000) / BEATS_PER_LEASE));
    this.beat = setTimeout(() => {
      void this.extend().then(() => this.scheduleBeat());
    }, every);
  }

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    if (this.stopped || this.lostController.signal.aborted) return;
    this.watchdog = setTimeout(
      () => {
        if (this.remainingMs > 0) return this.armWatchdog();
        this.lostController.abort(new Error('lease not confirmed before its deadline'));
      },
      Math.max(0, this.remainingMs),
    );
  }
}
