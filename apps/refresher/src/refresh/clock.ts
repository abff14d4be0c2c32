import { Injectable } from '@nestjs/common';

/** Time and chance as an adapter, so that refresh logic can be tested with fixed values. */
@Injectable()
export class Clock {
  now(): number {
    return Date.now();
  }

  /** Uniform in [0, 1): jitter and backoff. */
  random(): number {
    return Math.random();
  }
}
