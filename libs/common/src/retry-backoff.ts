/** What `RetryBackoff` logs through: Nest's `Logger` fits. */
export interface RetryLogger {
  warn(entry: object): void;
  log(entry: object): void;
}

/**
 * How a background loop that must not give up (the outbox relay, the audit consumer)
 * retries: full-jitter exponential backoff (from 100 ms, doubling, capped, never under
 * 50 ms so a loop cannot spin), and one warning per run of failures rather than one per
 * retry, with a line when it works again.
 */
export class RetryBackoff {
  private failures = 0;
  private complaining = false;

  constructor(
    private readonly logger: RetryLogger,
    private readonly maxMs: number,
    private readonly recoveredMessage: string,
  ) {}

  /** Counts a failure; returns the pause before the next attempt. */
  next(): number {
    this.failures++;
    const cap = Math.min(this.maxMs, 100 * 2 ** Math.min(this.failures, 16));
    return Math.max(50, Math.random() * cap);
  }

  /** Logs the first failure of a run of failures, not the retries after it. */
  complain(entry: { msg: string } & Record<string, unknown>): void {
    if (this.complaining) return;
    this.complaining = true;
    this.logger.warn(entry);
  }

  /** Ends a run of failures: the backoff starts over, and the recovery is logged if the failure was. */
  recovered(): void {
    if (this.complaining) this.logger.log({ msg: this.recoveredMessage });
    this.complaining = false;
    this.failures = 0;
  }
}
