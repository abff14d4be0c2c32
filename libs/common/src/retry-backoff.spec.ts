import { describe, expect, it } from 'vitest';
import { RetryBackoff } from './retry-backoff.js';

function logged() {
  const lines: Array<{ level: 'warn' | 'log'; entry: object }> = [];
  return {
    lines,
    logger: {
      warn: (entry: object) => lines.push({ level: 'warn', entry }),
      log: (entry: object) => lines.push({ level: 'log', entry }),
    },
  };
}

describe('RetryBackoff', () => {
  it('pauses at least 50 ms, at most 100 ms doubled per failure, never past the cap', () => {
    for (let run = 0; run < 50; run++) {
      const retry = new RetryBackoff(logged().logger, 1_000, '');
      for (let failures = 1; failures <= 8; failures++) {
        const pause = retry.next();
        expect(pause).toBeGreaterThanOrEqual(50);
        expect(pause).toBeLessThanOrEqual(Math.min(1_000, 100 * 2 ** failures));
      }
    }
  });

  it('starts over after a recovery', () => {
    const retry = new RetryBackoff(logged().logger, 60_000, '');
    for (let run = 0; run < 20; run++) {
      for (let i = 0; i < 10; i++) retry.next();
      retry.recovered();
      expect(retry.next()).toBeLessThanOrEqual(200);
    }
  });

  it('warns once per run of failures and says when it works again', () => {
    const { lines, logger } = logged();
    const retry = new RetryBackoff(logger, 1_000, 'ok again');
    retry.recovered();
    retry.complain({ msg: 'down', error: 'first' });
    retry.complain({ msg: 'down', error: 'second' });
    retry.recovered();
    retry.recovered();
    retry.complain({ msg: 'down', error: 'third' });
    expect(lines).toEqual([
      { level: 'warn', entry: { msg: 'down', error: 'first' } },
      { level: 'log', entry: { msg: 'ok again' } },
      { level: 'warn', entry: { msg: 'down', error: 'third' } },
    ]);
  });
});
