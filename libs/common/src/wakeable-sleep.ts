import { setTimeout as delay } from 'node:timers/promises';

/** A pause that nothing cuts short (retry delays, polls). */
export function sleep(ms: number): Promise<void> {
  return delay(ms);
}

/**
 * A pause that can be cut short: background loops (outbox relay, audit consumer) back off
 * with it and are woken at once when they should stop or when the connection is back.
 */
export class WakeableSleep {
  private wakeCurrent?: () => void;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wakeCurrent === done) this.wakeCurrent = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeCurrent = done;
    });
  }

  /** Ends the current pause, if any. */
  wake(): void {
    this.wakeCurrent?.();
  }
}
