import { describe, expect, it } from 'vitest';
import { DeadlineExceeded, settleWithin, withDeadline } from './deadline.js';

const after = <T>(ms: number, value: T, fail = false) =>
  new Promise<T>((resolve, reject) => setTimeout(() => (fail ? reject(new Error('boom')) : resolve(value)), ms));

describe('settleWithin', () => {
  it('is true when every promise settles in time, rejections included', async () => {
    expect(await settleWithin([after(5, 1), after(10, 2, true)], 500)).toBe(true);
    expect(await settleWithin(after(5, 1, true), 500)).toBe(true);
    expect(await settleWithin([], 0)).toBe(true);
  });

  it('is false once the bound passes, without waiting for the rest', async () => {
    const started = performance.now();
    expect(await settleWithin([after(5, 1), new Promise(() => undefined)], 50)).toBe(false);
    expect(performance.now() - started).toBeLessThan(400);
  });
});

describe('withDeadline', () => {
  it('passes the outcome through when in time', async () => {
    await expect(withDeadline(after(5, 'x'), 500)).resolves.toBe('x');
    await expect(withDeadline(after(5, 'x', true), 500)).rejects.toThrow('boom');
  });

  it('rejects with DeadlineExceeded when late', async () => {
    const late = withDeadline(after(300, 'x', true), 20);
    await expect(late).rejects.toBeInstanceOf(DeadlineExceeded);
    await expect(late).rejects.toThrow('no answer within 20 ms');
  });
});
