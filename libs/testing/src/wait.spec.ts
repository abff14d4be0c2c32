import { describe, expect, it } from 'vitest';
import { sleep, waitFor } from './wait.js';

describe('waitFor', () => {
  it('resolves with the first truthy value, retrying through falsy values and errors', async () => {
    let calls = 0;
    const value = await waitFor(
      async () => {
        calls++;
        if (calls === 1) throw new Error('not yet');
        return calls >= 3 ? { calls } : null;
      },
      { intervalMs: 1 },
    );
    expect(value).toEqual({ calls: 3 });
  });

  it('rejects with the message and the last error on timeout', async () => {
    await expect(waitFor(() => false, { timeoutMs: 30, message: 'the thing' })).rejects.toThrow(
      /timed out after 30 ms: the thing$/,
    );
    await expect(
      waitFor(
        () => {
          throw new Error('refused');
        },
        { timeoutMs: 30 },
      ),
    ).rejects.toThrow(/last error: refused/);
  });

  it('sleeps', async () => {
    const started = Date.now();
    await sleep(25);
    expect(Date.now() - started).toBeGreaterThanOrEqual(20);
  });
});
