/**
 * Seconds to wait after the n-th failed attempt (1-based): the first retries come within a
 * minute, so a receiver's short blip costs seconds, then the waits spread out to hourly.
 */
const SCHEDULE_SECONDS = [1, 5, 30, 60, 120, 300, 600, 1_200, 1_800, 3_600];

export function retryDelaySeconds(failedAttempts: number): number {
  const index = Math.min(Math.max(failedAttempts, 1), SCHEDULE_SECONDS.length) - 1;
  return SCHEDULE_SECONDS[index];
}

/**
 * When the delivery is retried, or null when the next try would fall outside the retry
 * budget (counted from the delivery's creation): then it is parked.
 */
export function nextAttemptAt(createdAt: Date, failedAttempts: number, now: Date, budgetSeconds: number): Date | null {
  const next = new Date(now.getTime() + retryDelaySeconds(failedAttempts) * 1_000);
  return next.getTime() > createdAt.getTime() + budgetSeconds * 1_000 ? null : next;
}
