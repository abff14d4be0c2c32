import { describe, expect, it } from 'vitest';
import { LogThrottle } from './log-throttle.js';

describe('LogThrottle', () => {
  it('admits one line per key per interval and reports how many it held back', () => {
    let now = 1_000;
    const throttle = new LogThrottle<string>(10_000, () => now);
    expect(throttle.admit('a')).toBe(0);
    expect(throttle.admit('a')).toBeUndefined();
    expect(throttle.admit('a')).toBeUndefined();
    expect(throttle.admit('b')).toBe(0);
    now += 9_999;
    expect(throttle.admit('a')).toBeUndefined();
    now += 1;
    expect(throttle.admit('a')).toBe(3);
    expect(throttle.admit('a')).toBeUndefined();
    expect(throttle.admit('b')).toBe(0);
  });
});
