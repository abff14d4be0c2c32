import { describe, expect, it } from 'vitest';
import {
  backoffDelayMs,
  earlier,
  EXPIRED_REFRESH_FLOOR_SECONDS,
  expiryWarningAt,
  onDemandWaitMs,
  retryDelayMs,
  scheduleRefresh,
} from './refresh-policy.js';

const issuedAt = new Date('2026-01-01T00:00:00.000Z');
const at = (seconds: number) => new Date(issuedAt.getTime() + seconds * 1000);
const base = { issuedAt, threshold: 0.8, minMarginSeconds: 60, random: 0 };

describe('scheduleRefresh', () => {
  it('refreshes at the threshold of the real lifetime, not of a fixed hour', () => {
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 3600 })).toEqual({
      expiresAt: at(3600),
      nextRefreshAt: at(2880),
    });
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 8 * 3600 }).nextRefreshAt).toEqual(at(0.8 * 8 * 3600));
  });

  it('never later than expiry minus the minimum margin', () => {
    // 0.95 × 1000 s = 950 s, but the 60 s margin asks for 940 s.
    expect(scheduleRefresh({ ...base, threshold: 0.95, lifetimeSeconds: 1000 }).nextRefreshAt).toEqual(at(940));
  });

  it('caps the margin at half the lifetime for short-lived tokens', () => {
    // 20 s token: the margin is 10 s, not 60 s (which would be before issue).
    expect(scheduleRefresh({ ...base, threshold: 0.8, lifetimeSeconds: 20 }).nextRefreshAt).toEqual(at(10));
  });

  it('honours a refresh_in hint, still within the margin', () => {
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 3600, refreshInSeconds: 600 }).nextRefreshAt).toEqual(at(600));
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 3600, refreshInSeconds: 3590 }).nextRefreshAt).toEqual(at(3540));
  });

  it('jitters earlier, by at most 5% of the lifetime or 30 s', () => {
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 100, random: 0.999999 }).nextRefreshAt!.getTime()).toBeCloseTo(
      at(50 - 5).getTime(),
      -1,
    );
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 36_000, random: 0.5 }).nextRefreshAt).toEqual(at(28_800 - 15));
  });

  it('never schedules a token without a known expiry', () => {
    expect(scheduleRefresh({ ...base })).toEqual({ expiresAt: null, nextRefreshAt: null });
  });

  it('a lifetime of zero is expired now and refreshed again after the floor, not never', () => {
    expect(EXPIRED_REFRESH_FLOOR_SECONDS).toBe(30);
    const floor = at(EXPIRED_REFRESH_FLOOR_SECONDS);
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 0 })).toEqual({ expiresAt: issuedAt, nextRefreshAt: floor });
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 0, refreshInSeconds: 1 })).toEqual({
      expiresAt: issuedAt,
      nextRefreshAt: floor,
    });
    expect(scheduleRefresh({ ...base, lifetimeSeconds: -5, random: 0.9 })).toEqual({
      expiresAt: issuedAt,
      nextRefreshAt: floor,
    });
    expect(scheduleRefresh({ ...base, lifetimeSeconds: Number.NaN })).toEqual({
      expiresAt: issuedAt,
      nextRefreshAt: floor,
    });
  });
});

describe('backoff', () => {
  it('grows exponentially with full jitter, capped', () => {
    expect(backoffDelayMs(1, 1000, 60_000, 0.999)).toBe(999);
    expect(backoffDelayMs(4, 1000, 60_000, 0.999)).toBe(7992);
    expect(backoffDelayMs(30, 1000, 60_000, 0.999)).toBe(59_940);
    expect(backoffDelayMs(3, 1000, 60_000, 0)).toBe(0);
  });

  it('never retries sooner than Retry-After', () => {
    expect(retryDelayMs({ attempt: 1, baseMs: 1000, capMs: 60_000, random: 0.1, retryAfterMs: 30_000 })).toBe(30_000);
    expect(retryDelayMs({ attempt: 1, baseMs: 1000, capMs: 60_000, random: 0.5 })).toBe(500);
  });
});

describe('onDemandWaitMs', () => {
  const now = issuedAt.getTime();
  const after = (lastRefreshedAt: Date | null, nextRefreshAt: Date | null = at(3600)) => ({
    lastRefreshedAt,
    nextRefreshAt,
  });
  it('waits out the cooldown after a refresh at the provider, then lets one through', () => {
    expect(onDemandWaitMs(after(at(-10)), 30, now)).toBe(20_000);
    expect(onDemandWaitMs(after(at(-10), null), 30, now)).toBe(20_000);
    expect(onDemandWaitMs(after(at(-30)), 30, now)).toBe(0);
    expect(onDemandWaitMs(after(at(-31)), 30, now)).toBe(0);
  });

  it('has nothing to wait for without a refresh at the provider, or with the budget off', () => {
    expect(onDemandWaitMs(after(null), 30, now)).toBe(0);
    expect(onDemandWaitMs(after(at(-1)), 0, now)).toBe(0);
  });

  it('waits no longer than the scheduled refresh: a due one goes ahead at once', () => {
    expect(onDemandWaitMs(after(at(-10), at(5)), 30, now)).toBe(5_000);
    expect(onDemandWaitMs(after(at(-1), at(0)), 30, now)).toBe(0);
    expect(onDemandWaitMs(after(at(-1), at(-2)), 30, now)).toBe(0);
  });
});

describe('keep-alive and refresh-token expiry', () => {
  it('refreshes a token with no known expiry every keepAliveSeconds, jittered earlier, never without it', () => {
    expect(scheduleRefresh({ ...base, keepAliveSeconds: 3 })).toEqual({ expiresAt: null, nextRefreshAt: at(3) });
    const jittered = scheduleRefresh({ ...base, random: 0.999, keepAliveSeconds: 86_400 }).nextRefreshAt!;
    expect(jittered.getTime()).toBeLessThan(at(86_400).getTime());
    expect(jittered.getTime()).toBeGreaterThanOrEqual(at(86_400 - 30).getTime());
    expect(scheduleRefresh({ ...base })).toEqual({ expiresAt: null, nextRefreshAt: null });
    // A known lifetime wins over keep-alive.
    expect(scheduleRefresh({ ...base, lifetimeSeconds: 100, keepAliveSeconds: 3 }).nextRefreshAt).toEqual(at(50));
  });

  it('warns of a refresh-token expiry once: not again for the same expiry, again for a new one', () => {
    const ends = at(10 * 86_400);
    expect(expiryWarningAt(ends, null, 7)).toEqual(at(3 * 86_400));
    expect(expiryWarningAt(ends, new Date(ends.getTime()), 7)).toBeNull();
    expect(expiryWarningAt(at(20 * 86_400), ends, 7)).toEqual(at(13 * 86_400));
    expect(expiryWarningAt(null, null, 7)).toBeNull();
    expect(earlier(at(5), null)).toEqual(at(5));
    expect(earlier(at(5), at(2))).toEqual(at(2));
  });
});
