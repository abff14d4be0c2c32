/**
 * Bounded waits. Shutdown steps, probes and scrapes all wait on something that may be
 * the very thing that is gone (a database, a NATS server), so each wait has a bound;
 * these two helpers are the only place the race against a timer is written.
 */

/**
 * Waits until every promise has settled (fulfilled or rejected) or `ms` have passed,
 * whichever comes first. Resolves to true when everything settled in time; never
 * rejects. The timer is cleared either way, so nothing keeps the process alive.
 */
export async function settleWithin(work: Promise<unknown> | readonly Promise<unknown>[], ms: number): Promise<boolean> {
  const all = Array.isArray(work) ? (work as readonly Promise<unknown>[]) : [work as Promise<unknown>];
  if (all.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([Promise.allSettled(all).then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Rejected by `withDeadline` when the work did not settle in time. */
export class DeadlineExceeded extends Error {
  override name = 'DeadlineExceeded';
  constructor(readonly ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

/**
 * The work's own outcome if it settles within `ms`, else a rejection with
 * DeadlineExceeded. A failure of the work after the deadline is swallowed, so it does
 * not surface as an unhandled rejection.
 */
export function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(ms)), ms);
  });
  work.catch(() => undefined);
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
