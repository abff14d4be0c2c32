/**
 * Lets a log line through at most once per key per interval, and counts what it held back,
 * so that a flood of bad messages (a misconfigured client, an attacker) costs one line per
 * reason every few seconds instead of one per message, while the count still shows the size.
 */
export class LogThrottle<K> {
  private readonly lastLogged = new Map<K, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The number of lines held back since the last one for `key` when this one may be logged, else undefined. */
  admit(key: K): number | undefined {
    const now = this.now();
    const state = this.lastLogged.get(key);
    if (state && now - state.at < this.intervalMs) {
      state.suppressed++;
      return undefined;
    }
    this.lastLogged.set(key, { at: now, suppressed: 0 });
    return state?.suppressed ?? 0;
  }
}
