/**
 * When to refresh, when to retry: pure functions of their inputs, with the
 * random source passed in so that tests can pin it.
 */

export interface ScheduleInput {
  /** When the token request was sent; lifetimes count from here. */
  issuedAt: Date;
  /** Lifetime from `expires_in`, else the provider's default; undefined = no known expiry. */
  lifetimeSeconds?: number;
  /** Server hint such as `refresh_in`. */
  refreshInSeconds?: number;
  /** Fraction of the lifetime after which to refresh (default 0.8). */
  threshold: number;
  /** Refresh at least this long before expiry, but never more than half the lifetime. */
  minMarginSeconds: number;
  /** Uniform in [0, 1). */
  random: number;
  /** For a token with no known expiry: refresh after this long anyway (keep-alive); undefined = never. */
  keepAliveSeconds?: number;
}

export interface Schedule {
  expiresAt: Date | null;
  nextRefreshAt: Date | null;
}

/** Jitter spreads tokens issued together: up to 5% of the lifetime, at most 30 s, always earlier. */
const JITTER_SHARE = 0.05;
const JITTER_MAX_MS = 30_000;

/**
 * A token that arrives already expired (`expires_in: 0`, the refresh policy) is refreshed again this
 * long after it was requested: soon enough to replace it, late enough that a provider which
 * always answers 0 is asked twice a minute per credential rather than in a tight loop.
 */
export const EXPIRED_REFRESH_FLOOR_SECONDS = 30;

export function scheduleRefresh(input: ScheduleInput): Schedule {
  const { issuedAt, lifetimeSeconds } = input;
  if (lifetimeSeconds === undefined) return keepAlive(issuedAt, input.keepAliveSeconds, input.random);
  if (!(lifetimeSeconds > 0)) {
    // Zero (or less) is a known expiry, now; "no expiry" would never refresh it again.
    return {
      expiresAt: new Date(issuedAt.getTime()),
      nextRefreshAt: new Date(issuedAt.getTime() + EXPIRED_REFRESH_FLOOR_SECONDS * 1000),
    };
  }
  const issued = issuedAt.getTime();
  const lifetimeMs = lifetimeSeconds * 1000;
  const expiresAt = issued + lifetimeMs;
  let due = issued + input.threshold * lifetimeMs;
  if (input.refreshInSeconds !== undefined && input.refreshInSeconds > 0) {
    due = issued + input.refreshInSeconds * 1000;
  }
  const marginMs = Math.min(input.minMarginSeconds * 1000, lifetimeMs / 2);
  due = Math.min(due, expiresAt - marginMs);
  due -= input.random * Math.min(JITTER_SHARE * lifetimeMs, JITTER_MAX_MS);
  return { expiresAt: new Date(expiresAt), nextRefreshAt: new Date(Math.max(issued, due)) };
}

/** Keep-alive of a credential whose token has no known expiry, and how far ahead a refresh-token expiry is warned of. */
export const DEFAULT_KEEP_ALIVE_SECONDS = 86_400;
export const DEFAULT_EXPIRY_WARNING_DAYS = 7;

/**
 * A token with no known expiry is still refreshed every `keepAliveSeconds`: a sliding
 * refresh-token lifetime (an idle timeout) is renewed by each use, and a grant that died is
 * found out by the refresh instead of by the next consumer. Jittered as a lifetime would be.
 */
function keepAlive(issuedAt: Date, keepAliveSeconds: number | undefined, random: number): Schedule {
  if (keepAliveSeconds === undefined || !(keepAliveSeconds > 0)) return { expiresAt: null, nextRefreshAt: null };
  const periodMs = keepAliveSeconds * 1000;
  const jitter = random * Math.min(JITTER_SHARE * periodMs, JITTER_MAX_MS);
  return { expiresAt: null, nextRefreshAt: new Date(issuedAt.getTime() + periodMs - jitter) };
}

/**
 * When `token.expiring` is due for a refresh-token expiry, or null when that expiry was
 * already warned of (once per grant: a new expiry, a new warning).
 */
export function expiryWarningAt(
  refreshTokenExpiresAt: Date | null | undefined,
  warnedFor: Date | null | undefined,
  warningDays: number,
): Date | null {
  if (!refreshTokenExpiresAt) return null;
  if (warnedFor && warnedFor.getTime() === refreshTokenExpiresAt.getTime()) return null;
  return new Date(refreshTokenExpiresAt.getTime() - warningDays * 86_400_000);
}

/** The earlier of two due times, null standing for "never". */
export function earlier(a: Date | null, b: Date | null): Date | null {
  if (a === null) return b;
  if (b === null) return a;
  return a.getTime() <= b.getTime() ? a : b;
}

/** Exponential backoff with full jitter: uniform in [0, min(cap, base·2^(attempt-1))]. */
export function backoffDelayMs(attempt: number, baseMs: number, capMs: number, random: number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.floor(random * ceiling);
}

export interface RetryInput {
  attempt: number;
  baseMs: number;
  capMs: number;
  random: number;
  /** From Retry-After: the provider said when; never retry sooner. */
  retryAfterMs?: number;
}

export function retryDelayMs(input: RetryInput): number {
  const backoff = backoffDelayMs(input.attempt, input.baseMs, input.capMs, input.random);
  return input.retryAfterMs !== undefined ? Math.max(backoff, input.retryAfterMs) : backoff;
}

export interface RegistrationScheduleInput {
  /** When the registration arrived: a registered lifetime counts from here. */
  registeredAt: Date;
  hasAccessToken: boolean;
  /** Whether a refresh can ever happen (a refresh token, or the client_credentials grant). */
  canRefresh: boolean;
  expiresInSeconds?: number;
  expiresAt?: Date;
  /** The provider's default lifetime, for a token registered without one. */
  defaultTtlSeconds?: number;
  threshold: number;
  minMarginSeconds: number;
  random: number;
  /** See ScheduleInput.keepAliveSeconds. */
  keepAliveSeconds?: number;
}

/**
 * The schedule of a registered credential. Without an access token (or with one already
 * expired) the first refresh is due now. An expiresAt in the past is a known expiry, not
 * "no expiry": scheduleRefresh has no schedule for a lifetime <= 0, so the expired token's
 * expiry is kept here.
 */
export function scheduleRegistration(input: RegistrationScheduleInput): Schedule {
  const { registeredAt, hasAccessToken } = input;
  const lifetime =
    input.expiresInSeconds ??
    (input.expiresAt ? (input.expiresAt.getTime() - registeredAt.getTime()) / 1000 : input.defaultTtlSeconds);
  const schedule = scheduleRefresh({
    issuedAt: registeredAt,
    lifetimeSeconds: hasAccessToken ? lifetime : undefined,
    threshold: input.threshold,
    minMarginSeconds: input.minMarginSeconds,
    random: input.random,
    keepAliveSeconds: input.keepAliveSeconds,
  });
  const expired = hasAccessToken && lifetime !== undefined && lifetime <= 0;
  const expiresAt = !hasAccessToken
    ? null
    : expired
      ? new Date(registeredAt.getTime() + lifetime * 1000)
      : schedule.expiresAt;
  const nextRefreshAt = !input.canRefresh ? null : !hasAccessToken || expired ? registeredAt : schedule.nextRefreshAt;
  return { expiresAt, nextRefreshAt };
}

/**
 * How long an on-demand refresh of a credential must still wait: its budget is one refresh
 * at the provider per `cooldownSeconds`, counted from the last one of any kind (scheduled,
 * on demand, admin), as stored on the row so that every replica sees the same budget.
 * Registration and connect do not refresh at the provider and so do not start a cooldown.
 * A credential whose scheduled refresh is due waits for nothing: that refresh is no extra
 * call, only an earlier one, and a token living shorter than the cooldown is not left to
 * expire while callers are turned away. 0 when an on-demand refresh may go ahead now.
 */
export function onDemandWaitMs(
  credential: { lastRefreshedAt: Date | null; nextRefreshAt: Date | null },
  cooldownSeconds: number,
  nowMs: number,
): number {
  if (credential.lastRefreshedAt === null || cooldownSeconds <= 0) return 0;
  const budgetMs = credential.lastRefreshedAt.getTime() + cooldownSeconds * 1000;
  const dueMs = credential.nextRefreshAt?.getTime() ?? Number.POSITIVE_INFINITY;
  return Math.max(0, Math.min(budgetMs, dueMs) - nowMs);
}
