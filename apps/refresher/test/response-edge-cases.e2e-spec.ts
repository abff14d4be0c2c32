import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LIFETIME_SECONDS } from '../src/providers/token-response.classifier.js';
import { EXPIRED_REFRESH_FLOOR_SECONDS } from '../src/refresh/refresh-policy.js';
import {
  callApi,
  describeCredential,
  printLogsOnFailure,
  providersFor,
  RequestClock,
  type Key,
} from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * Token responses at the edges, against the sandbox with
 * rotation and reuse detection (grace 0):
 * - `expires_in: 0` is "expired now": the credential stays active and is refreshed again
 *   after the floor, instead of never;
 * - `expires_in: 1e13` is clamped (a year): the rotated refresh token is committed, not lost
 *   to an Invalid Date;
 * - an OAuth error code nobody knows, inside a 200, backs off like a transient fault
 *   instead of parking the credential for the misconfiguration delay (10 min here).
 */
const BACKOFF_MAX_MS = 1_000;
const MISCONFIGURED_MS = 600_000;

describe('refresher: token responses at the edges', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let zero: SandboxProvider;
  let huge: SandboxProvider;
  let unknown: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;

  beforeAll(async () => {
    [nats, db, zero, huge, unknown] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_edges'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
        {
          BACKOFF_BASE_MS: '100',
          BACKOFF_MAX_MS: String(BACKOFF_MAX_MS),
          MISCONFIGURED_RETRY_MS: String(MISCONFIGURED_MS),
        },
      ),
      providersFor({ zero: { sandbox: zero }, huge: { sandbox: huge }, unknown: { sandbox: unknown } }),
    );
    caller = await RawCaller.connect(nats.url);
  });

  afterEach((context) => printLogsOnFailure(context, refresher));

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([zero?.close(), huge?.close(), unknown?.close(), nats?.stop()]);
    await db?.drop();
  });

  const versionOf = async (key: Key) => (await describeCredential(caller, key)).version as number;

  it('expires_in 0: active, expired now, refreshed again after the floor', { timeout: 90_000 }, async () => {
    const key = { tenant: 'edges', connection: 'zero' };
    zero.setFault({ type: 'expires_in', value: 0 });
    const clock = new RequestClock(zero);
    try {
      expect(
        (await caller.admin('register', { ...key, provider: 'zero', refreshToken: zero.issueRefreshToken() })).ok,
      ).toBe(true);
      await waitFor(async () => (await versionOf(key)) >= 2, { timeoutMs: 10_000, message: 'the first refresh' });
      const first = await describeCredential(caller, key);
      expect(first).toMatchObject({ status: 'active', version: 2, failures: 0, lastError: null });
      // Expired at issue, due again one floor later (no jitter below the floor).
      expect(Date.parse(first.expiresAt)).toBeLessThanOrEqual(Date.now());
      expect(first.nextRefreshAt).not.toBeNull();
      expect(Date.parse(first.nextRefreshAt) - Date.parse(first.expiresAt)).toBe(EXPIRED_REFRESH_FLOOR_SECONDS * 1000);

      await waitFor(async () => (await versionOf(key)) >= 3, {
        timeoutMs: (EXPIRED_REFRESH_FLOOR_SECONDS + 15) * 1000,
        intervalMs: 250,
        message: 'the refresh after the floor',
      });
      const second = await describeCredential(caller, key);
      expect(second).toMatchObject({ status: 'active', version: 3, failures: 0 });
      const [a, b] = clock.arrivals;
      expect(b!.at - a!.at).toBeGreaterThanOrEqual(EXPIRED_REFRESH_FLOOR_SECONDS * 1000 - 1_000);
      // Not a tight loop, and no refresh token was presented twice.
      expect(zero.stats.refreshGrants).toBe(2);
      expect(zero.stats.reuseDetected).toBe(0);
      expect(zero.stats.familiesRevoked).toBe(0);
    } finally {
      clock.stop();
      zero.clearFaults();
    }
  });

  it('expires_in 1e13: clamped to a year, the rotated refresh token committed', async () => {
    const key = { tenant: 'edges', connection: 'huge' };
    huge.setFault({ type: 'expires_in', value: 1e13 });
    try {
      const before = Date.now();
      expect(
        (await caller.admin('register', { ...key, provider: 'huge', refreshToken: huge.issueRefreshToken() })).ok,
      ).toBe(true);
      await waitFor(async () => (await versionOf(key)) >= 2, {
        timeoutMs: 10_000,
        message: 'the refresh to be committed',
      });
      const c = await describeCredential(caller, key);
      expect(c).toMatchObject({ status: 'active', version: 2, failures: 0, lastError: null });
      const lifetimeMs = Date.parse(c.expiresAt) - before;
      expect(lifetimeMs).toBeGreaterThanOrEqual(MAX_LIFETIME_SECONDS * 1000 - 60_000);
      expect(lifetimeMs).toBeLessThanOrEqual(MAX_LIFETIME_SECONDS * 1000 + 60_000);
      expect(Date.parse(c.nextRefreshAt)).toBeLessThan(Date.parse(c.expiresAt));

      const got = await caller.get(key);
      expect(got).toMatchObject({ ok: true, token: { version: 2 } });
      expect(await callApi(huge, got.token.accessToken)).toBe(200);
      // The stored refresh token is the rotated one: the next refresh is accepted, no reuse.
      huge.clearFaults();
      expect(await caller.admin('refresh', key)).toMatchObject({
        ok: true,
        credential: { status: 'active', version: 3 },
      });
      expect(huge.stats.reuseDetected).toBe(0);
      expect(huge.stats.familiesRevoked).toBe(0);
      const warning = refresher.logs.lines.map((l) => JSON.parse(l)).find((l) => /clamped/.test(l.msg ?? ''));
      expect(warning).toMatchObject({
        level: 'warn',
        provider: 'huge',
        field: 'expires_in',
        usedSeconds: MAX_LIFETIME_SECONDS,
      });
    } finally {
      huge.clearFaults();
    }
  });

  it('an unknown error code in a 200: failing with the code, retried on the backoff schedule', async () => {
    const key = { tenant: 'edges', connection: 'unknown' };
    const tokens = unknown.issueTokens();
    expect(
      (
        await caller.admin('register', {
          ...key,
          provider: 'unknown',
          accessToken: tokens.accessToken,
          refreshToken: tokens.refreshToken,
          expiresIn: 3600,
        })
      ).ok,
    ).toBe(true);
    unknown.setFault({ type: 'error_in_200', error: 'bad_refresh_token' });
    try {
      const t0 = Date.now();
      expect(await caller.admin('refresh', key)).toMatchObject({ ok: false, error: { code: 'refresh_failed' } });
      const c = await describeCredential(caller, key);
      expect(c).toMatchObject({ status: 'failing', failures: 1, version: 1, lastError: { code: 'refresh_failed' } });
      expect(c.lastError.message).toMatch(/HTTP 200 bad_refresh_token/);
      // The backoff (cap 1 s here), not the misconfiguration delay (10 min here).
      expect(Date.parse(c.nextRefreshAt)).toBeLessThanOrEqual(Date.now() + BACKOFF_MAX_MS);
      const requests = unknown.stats.tokenRequests;
      await waitFor(async () => (await describeCredential(caller, key)).failures >= 4, {
        timeoutMs: 10_000,
        message: 'retries on the backoff schedule',
      });
      expect(unknown.stats.tokenRequests).toBeGreaterThanOrEqual(requests + 3);
      expect(Date.now() - t0).toBeLessThan(MISCONFIGURED_MS / 2);
      // The old token is served meanwhile, and there is no "misconfigured" alarm for it.
      expect(await caller.get(key)).toMatchObject({ ok: true, token: { accessToken: tokens.accessToken, version: 1 } });
      expect(refresher.logs.lines.filter((l) => /MISCONFIGURED/.test(l) && /"provider":"unknown"/.test(l))).toEqual([]);
    } finally {
      unknown.clearFaults();
    }
    // The fault ends: the scheduled retry recovers the credential by itself.
    await waitFor(async () => (await describeCredential(caller, key)).status === 'active', {
      timeoutMs: BACKOFF_MAX_MS + 5_000,
      message: 'recovery',
    });
    expect(await describeCredential(caller, key)).toMatchObject({ version: 2, failures: 0 });
    expect(unknown.stats.reuseDetected).toBe(0);
  });
});
