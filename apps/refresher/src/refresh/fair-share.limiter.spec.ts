import { describe, expect, it } from 'vitest';
import { FairShareLimiter } from './fair-share.limiter.js';

/** A task that runs until released by hand, recording when it started. */
function gate(log: string[], name: string) {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return {
    task: async () => {
      log.push(name);
      await opened;
      return name;
    },
    open,
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('FairShareLimiter', () => {
  it('never runs more than its concurrency at once', async () => {
    const limiter = new FairShareLimiter(2);
    let running = 0;
    let peak = 0;
    const task = async () => {
      running++;
      peak = Math.max(peak, running);
      await settle();
      running--;
    };
    await Promise.all(Array.from({ length: 20 }, (_, i) => limiter.run(i % 3 === 0 ? 'a' : 'b', task)));
    expect(peak).toBe(2);
    expect(limiter.activeCount).toBe(0);
    expect(limiter.pendingCount).toBe(0);
  });

  it("one tenant's backlog delays another tenant's task by one turn, not by the backlog", async () => {
    const limiter = new FairShareLimiter(1);
    const log: string[] = [];
    const first = gate(log, 'a0');
    const storm = [
      limiter.run('a', first.task),
      ...Array.from({ length: 50 }, (_, i) => limiter.run('a', async () => void log.push(`a${i + 1}`))),
    ];
    const due = limiter.run('b', async () => void log.push('b0'));
    expect(limiter.pendingOf('a')).toBe(50);
    expect(limiter.pendingOf('b')).toBe(1);
    first.open();
    await Promise.all([due, ...storm]);
    // a's turn came first (it queued first), then b's: one task of a ahead of b, not fifty.
    expect(log.slice(0, 4)).toEqual(['a0', 'a1', 'b0', 'a2']);
    expect(log).toHaveLength(52);
  });

  it('round-robins over the tenants with work waiting, each in arrival order', async () => {
    const limiter = new FairShareLimiter(1);
    const log: string[] = [];
    const first = gate(log, 'x');
    const held = limiter.run('x', first.task);
    const all = [
      ...['a1', 'a2', 'a3'].map((n) => limiter.run('a', async () => void log.push(n))),
      ...['b1', 'b2'].map((n) => limiter.run('b', async () => void log.push(n))),
      limiter.run('c', async () => void log.push('c1')),
    ];
    first.open();
    await Promise.all([held, ...all]);
    expect(log).toEqual(['x', 'a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
  });

  it('a failing task frees its slot and rejects only its own caller', async () => {
    const limiter = new FairShareLimiter(1);
    const failing = limiter.run('a', async () => {
      throw new Error('boom');
    });
    const thrown = limiter.run('a', () => {
      throw new Error('sync boom');
    });
    const next = limiter.run('b', async () => 'ok');
    await expect(failing).rejects.toThrow('boom');
    await expect(thrown).rejects.toThrow('sync boom');
    await expect(next).resolves.toBe('ok');
    expect(limiter.activeCount).toBe(0);
  });

  it('stays linear with a long backlog (the queue compacts)', async () => {
    const limiter = new FairShareLimiter(4);
    let done = 0;
    const tasks = Array.from({ length: 20_000 }, (_, i) => limiter.run(`t${i % 7}`, async () => void done++));
    await Promise.all(tasks);
    expect(done).toBe(20_000);
    expect(limiter.pendingCount).toBe(0);
  });

  it('refuses a concurrency below 1', () => {
    expect(() => new FairShareLimiter(0)).toThrow(RangeError);
  });
});
