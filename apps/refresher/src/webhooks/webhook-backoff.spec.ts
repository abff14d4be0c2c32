import { describe, expect, it } from 'vitest';
import { nextAttemptAt, retryDelaySeconds } from './webhook-backoff.js';

describe('webhook backoff', () => {
  it('retries within a minute first, then spreads out to hourly', () => {
    expect([1, 2, 3].map(retryDelaySeconds)).toEqual([1, 5, 30]);
    const waits = Array.from({ length: 30 }, (_, i) => retryDelaySeconds(i + 1));
    for (let i = 1; i < waits.length; i++) expect(waits[i]).toBeGreaterThanOrEqual(waits[i - 1]);
    expect(waits.at(-1)).toBe(3_600);
    expect(Math.max(...waits)).toBe(3_600);
  });

  it('parks once the next try would fall outside the budget', () => {
    const created = new Date('2026-01-01T00:00:00Z');
    const day = 86_400;
    expect(nextAttemptAt(created, 1, created, day)).toEqual(new Date('2026-01-01T00:00:01Z'));
    const late = new Date(created.getTime() + (day - 10) * 1_000);
    expect(nextAttemptAt(created, 20, late, day)).toBeNull();
    expect(nextAttemptAt(created, 1, created, 0)).toBeNull();
  });

  it('a day of budget gives a few dozen attempts', () => {
    const created = new Date(0);
    let now = created;
    let attempts = 1;
    for (;;) {
      const next = nextAttemptAt(created, attempts, now, 86_400);
      if (!next) break;
      now = next;
      attempts++;
    }
    expect(attempts).toBeGreaterThan(20);
    expect(attempts).toBeLessThan(40);
  });
});
