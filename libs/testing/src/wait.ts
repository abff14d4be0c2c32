import { setTimeout as delay } from 'node:timers/promises';

export interface WaitForOptions {
  /** Default 10 000. */
  timeoutMs?: number;
  /** Default 20. */
  intervalMs?: number;
  /** Names what was awaited, so a timeout says more than "timed out". */
  message?: string;
}

export { sleep } from '@tokenkeeper/common';

/**
 * Polls `probe` until it returns a truthy value and resolves with it. A probe that
 * throws counts as "not yet" (the thing may still be starting); its last error is
 * appended to the timeout message.
 */
export async function waitFor<T>(probe: () => T | Promise<T>, options: WaitForOptions = {}): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 20, message = 'condition not met' } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`waitFor timed out after ${timeoutMs} ms: ${message}${cause}`, { cause: lastError });
    }
    await delay(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}
