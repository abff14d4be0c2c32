import { Injectable } from '@nestjs/common';

/**
 * Time and chance as an adapter: every decision on time (is a token valid for minTtl,
 * when a token request was sent, when a schedule is due, how long to wait) reads it, so
 * tests substitute it. `now()` is a plain number, so the token.get hot path allocates nothing.
 */
@Injectable()
export class Clock {
  /** Epoch milliseconds. */
  now(): number {
    return Date.now();
  }

  /** Uniform in [0, 1): jitter and backoff. */
  random(): number {
    return Math.random();
  }
}
