import { ERROR_CODES } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxFault,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  callApi,
  describeCredential,
  EventLog,
  printLogsOnFailure,
  providersFor,
  RequestClock,
  type Key,
} from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * A provider that misbehaves in every way seen in the wild. The refresher must classify
 * each answer, keep serving a still-valid token, back off (honouring Retry-After), keep
 * working for other providers, and recover by itself once the provider is well again.
 */

const BASE_MS = 50;
const CAP_MS = 800;
const MISCONFIGURED_MS = 30_000;
const TIMEOUT_MS = 1_000;
const ceiling = (attempt: number) => Math.min(CAP_MS, BASE_MS * 2 ** (attempt - 1));
const SECRETS = ['sandbox-secret', 'not-the-secret'];

describe('refresher: provider faults', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  /** Faults under test; every token here lives an hour, so only the credential under test talks to it. */
  let faulty: SandboxProvider;
  /** A well-behaved provider with 2 s tokens, refreshed all the time while the other one fails. */
  let healthy: SandboxProvider;
  /** Expired-token and misconfiguration cases, kept off `faulty` so that its request counts stay exact. */
  let edge: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let events: EventLog;

  const healthyKeys: Key[] = [0, 1, 2].map((i) => ({ tenant: 'others', connection: `h${i}` }));
  const healthyAnswers: { key: Key; at: number; reply: any }[] = [];
  let background: Promise<void> | undefined;
  let stopBackground = false;

  beforeAll(async () => {
    [nats, db, faulty, healthy, edge] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_faults'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
      // No rotation: a spurious timeout on a starved machine must not cost these bystanders their grant.
      startSandboxProvider({ accessTokenTtlSeconds: 2, rotateRefreshTokens: false }),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    const env = testEnv(
      { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
      {
        REFRESH_TIMEOUT_MS: String(TIMEOUT_MS),
        BACKOFF_BASE_MS: String(BASE_MS),
        BACKOFF_MAX_MS: String(CAP_MS),
        MISCONFIGURED_RETRY_MS: String(MISCONFIGURED_MS),
      },
    );
    refresher = await startTestRefresher(
      env,
      providersFor({
        faulty: { sandbox: faulty },
        healthy: { sandbox: healthy },
        edge: { sandbox: edge },
        'edge-wrong-secret': { sandbox: edge, clientSecret: 'not-the-secret' },
      }),
    );
    caller = await RawCaller.connect(nats.url);
    events = new EventLog(caller.nc);

    for (const key of healthyKeys) {
      const reg = await caller.admin('register', {
        ...key,
        provider: 'healthy',
        refreshToken: healthy.issueRefreshToken(),
      });
      expect(reg.ok).toBe(true);
    }
    background = (async () => {
      while (!stopBackground) {
        for (const key of healthyKeys) {
          const reply = await caller.get(key);
          healthyAnswers.push({ key, at: Date.now(), reply });
        }
        await sleep(50);
      }
    })();
  });

  afterEach((context) => printLogsOnFailure(context, refresher));

  afterAll(async () => {
    stopBackground = true;
    await background?.catch(() => undefined);
    events?.close();
    await caller?.close();
    await refresher?.close();
    await Promise.all([faulty?.close(), healthy?.close(), edge?.close(), nats?.stop()]);
    await db?.drop();
  });

  async function registerValid(sandbox: SandboxProvider, key: Key, provider = 'faulty') {
    const tokens = sandbox.issueTokens();
    const reg = await caller.admin('register', {
      ...key,
      provider,
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn: 3600,
    });
    expect(reg.ok).toBe(true);
    const got = await caller.get(key);
    expect(got).toMatchObject({ ok: true, token: { accessToken: tokens.accessToken, version: 1 } });
    return { tokens, token: got.token };
  }

  function expectNoSecrets(value: unknown, extra: string[] = []) {
    const text = JSON.stringify(value);
    for (const secret of [...SECRETS, ...extra]) expect(text).not.toContain(secret);
  }

  const retryable: {
    name: string;
    fault: SandboxFault;
    code: 'refresh_failed' | 'unavailable';
    message: RegExp;
    never?: string;
  }[] = [
    {
      name: 'http500',
      fault: { type: 'status', status: 500, body: 'Internal Server Error' },
      code: 'refresh_failed',
      message: /HTTP 500/,
    },
    { name: 'html502', fault: { type: 'html' }, code: 'refresh_failed', message: /HTTP 502/ },
    {
      name: 'html200',
      fault: { type: 'html200' },
      code: 'refresh_failed',
      message: /HTTP 200 is not a token response: HTML page/,
    },
    // GitHub answers errors inside an HTTP 200; a retryable RFC code there is retried with backoff.
    {
      name: 'error200',
      fault: { type: 'error_in_200', error: 'server_error' },
      code: 'refresh_failed',
      message: /HTTP 200 server_error/,
    },
    {
      name: 'form',
      fault: { type: 'form_encoded' },
      code: 'refresh_failed',
      message: /form-encoded body/,
      never: 'at_formencoded',
    },
    { name: 'stall', fault: { type: 'stall' }, code: 'unavailable', message: /no complete answer within/ },
    { name: 'reset', fault: { type: 'reset' }, code: 'unavailable', message: /network error/ },
    { name: 'huge', fault: { type: 'huge' }, code: 'refresh_failed', message: /exceeds \d+ bytes/, never: 'at_huge' },
    {
      name: 'tempunavail',
      fault: { type: 'oauth_error', error: 'temporarily_unavailable' },
      code: 'refresh_failed',
      message: /HTTP 400 temporarily_unavailable/,
    },
  ];

  it.each(retryable)(
    '$name: keeps serving the valid token, backs off, then recovers',
    async ({ name, fault, code, message, never }) => {
      const key = { tenant: 'faults', connection: name };
      const { tokens, token: v1 } = await registerValid(faulty, key);
      const healthyBefore = await Promise.all(
        healthyKeys.map(async (k) => (await describeCredential(caller, k)).version as number),
      );

      faulty.setFault(fault);
      const t0 = Date.now();
      const refreshed = await caller.admin('refresh', key);
      expect(refreshed).toMatchObject({ ok: false, error: { code } });
      expectNoSecrets(refreshed, [tokens.refreshToken]);

      // The still-valid token is served, unchanged.
      expect(await caller.get(key)).toEqual({ ok: true, token: v1 });
      expect(await caller.get({ ...key, minTtlSeconds: 0 })).toEqual({ ok: true, token: v1 });

      const failing = await describeCredential(caller, key);
      expect(failing).toMatchObject({ status: 'failing', version: 1, lastError: { code } });
      expect(ERROR_CODES).toContain(failing.lastError.code);
      expect(failing.lastError.message).toMatch(message);
      expect(failing.failures).toBeGreaterThanOrEqual(1);
      expect(Date.parse(failing.nextRefreshAt)).toBeGreaterThanOrEqual(t0);
      expect(Date.parse(failing.nextRefreshAt)).toBeLessThanOrEqual(Date.now() + CAP_MS);
      expectNoSecrets(failing, [tokens.refreshToken]);

      const first = await waitFor(() => events.of('failed', key.tenant, key.connection)[0]);
      expect(first.data).toMatchObject({ code, attempt: 1, status: 'failing', version: 1, provider: 'faulty' });
      expect(Date.parse(first.data.retryAt)).toBeGreaterThanOrEqual(t0);
      expect(Date.parse(first.data.retryAt) - first.at).toBeLessThanOrEqual(ceiling(1));

      // The scheduler keeps retrying by itself while the fault lasts; the valid token is still served.
      await waitFor(async () => (await describeCredential(caller, key)).failures >= 2, {
        timeoutMs: 8_000,
        message: `${name}: second attempt`,
      });
      const still = await describeCredential(caller, key);
      expect(still).toMatchObject({ status: 'failing', version: 1 });
      expect(await caller.get(key)).toEqual({ ok: true, token: v1 });

      if (name === 'stall') {
        // While token requests to one provider hang, the others are still refreshed.
        await waitFor(
          async () => {
            const now = await Promise.all(
              healthyKeys.map(async (k) => (await describeCredential(caller, k)).version as number),
            );
            return now.every((v, i) => v > healthyBefore[i]!);
          },
          { timeoutMs: 5_000, message: 'healthy credentials refreshed during the stall' },
        );
      }

      faulty.clearFaults();
      const recovered = await waitFor(
        async () => {
          const c = await describeCredential(caller, key);
          return c.status === 'active' && c.version === 2 ? c : undefined;
        },
        { timeoutMs: TIMEOUT_MS + CAP_MS + 3_000, message: `${name}: recovery` },
      );
      expect(recovered).toMatchObject({ failures: 0, lastError: null });
      expect(Date.parse(recovered.nextRefreshAt)).toBeGreaterThan(Date.now() + 60_000);

      const fresh = await caller.get(key);
      expect(fresh).toMatchObject({ ok: true, token: { version: 2 } });
      expect(fresh.token.accessToken).not.toBe(v1.accessToken);
      if (never) expect(fresh.token.accessToken).not.toBe(never);
      expect(await callApi(faulty, fresh.token.accessToken)).toBe(200);
      expect(faulty.everPresentedTwice()).toEqual([]);
    },
  );

  it('grows the backoff across consecutive failures, within the cap, and never retries early', async () => {
    const key = { tenant: 'faults', connection: 'backoff' };
    await registerValid(faulty, key);
    faulty.setFault({ type: 'status', status: 500 });
    const t0 = Date.now();
    expect(await caller.admin('refresh', key)).toMatchObject({ ok: false, error: { code: 'refresh_failed' } });
    const LAST = 9;
    await waitFor(() => events.of('failed', key.tenant, key.connection).length >= LAST, {
      timeoutMs: 15_000,
      message: `${LAST} failures`,
    });
    faulty.clearFaults();

    const failed = events.of('failed', key.tenant, key.connection).slice(0, LAST);
    expect(failed.map((e) => e.data.attempt)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const delays = failed.map((e) => Date.parse(e.data.retryAt) - e.at);
    failed.forEach((e, i) => {
      const attempt = i + 1;
      // Full jitter: uniform in [0, min(cap, base·2^(attempt-1))], so the delay from the failure is at most that.
      expect(delays[i]!, `attempt ${attempt}`).toBeLessThanOrEqual(ceiling(attempt));
      expect(Date.parse(e.data.retryAt)).toBeGreaterThanOrEqual(i === 0 ? t0 : failed[i - 1]!.at - 50);
      // The next attempt is never made before the time announced.
      if (i > 0)
        expect(e.at, `attempt ${attempt} not before retryAt of ${attempt - 1}`).toBeGreaterThanOrEqual(
          Date.parse(failed[i - 1]!.data.retryAt),
        );
    });
    // With the ceiling at 16× the first one, late delays beyond the first ceiling are all but certain
    // (all five under it: (1/16)^5); a backoff that does not grow never gets there.
    expect(Math.max(...delays.slice(4))).toBeGreaterThan(ceiling(1));
    expect(Math.max(...delays)).toBeLessThanOrEqual(CAP_MS);

    const recovered = await waitFor(
      async () => {
        const c = await describeCredential(caller, key);
        return c.status === 'active' ? c : undefined;
      },
      { timeoutMs: 5_000, message: 'recovery after the backoff' },
    );
    expect(recovered).toMatchObject({ version: 2, failures: 0 });
  });

  it.each([429, 503] as const)(
    '%i with Retry-After: no request before the time the provider asked for',
    async (status) => {
      const key = { tenant: 'faults', connection: `retry-after-${status}` };
      const { token: v1 } = await registerValid(faulty, key);
      const RETRY_AFTER_S = 2; // well above the backoff cap, so only Retry-After can explain the wait
      faulty.injectFault({ type: 'rate_limit', status, retryAfterSeconds: RETRY_AFTER_S }, 1);

      const t0 = Date.now();
      expect(await caller.admin('refresh', key)).toMatchObject({ ok: false, error: { code: 'refresh_failed' } });
      const requestsAfterFailure = faulty.stats.tokenRequests;
      const clock = new RequestClock(faulty);
      try {
        const failing = await describeCredential(caller, key);
        expect(failing).toMatchObject({
          status: 'failing',
          failures: 1,
          version: 1,
          lastError: { code: 'refresh_failed' },
        });
        expect(failing.lastError.message).toMatch(
          status === 429 ? /HTTP 429 too_many_requests/ : /HTTP 503 temporarily_unavailable/,
        );
        const retryAt = Date.parse(failing.nextRefreshAt);
        expect(retryAt).toBeGreaterThanOrEqual(t0 + RETRY_AFTER_S * 1000);
        const [event] = events.of('failed', key.tenant, key.connection);
        expect(Date.parse(event!.data.retryAt)).toBe(retryAt);

        // Until then the provider hears nothing, and the valid token is served.
        while (Date.now() < retryAt - 100) {
          expect(faulty.stats.tokenRequests).toBe(requestsAfterFailure);
          expect(await caller.get(key)).toEqual({ ok: true, token: v1 });
          await sleep(100);
        }
        const recovered = await waitFor(
          async () => {
            const c = await describeCredential(caller, key);
            return c.status === 'active' ? c : undefined;
          },
          { timeoutMs: 5_000, message: 'retry after Retry-After' },
        );
        expect(recovered).toMatchObject({ version: 2, failures: 0 });
        expect(clock.arrivals.length).toBeGreaterThanOrEqual(1);
        expect(clock.arrivals[0]!.at).toBeGreaterThanOrEqual(retryAt);
        expect(faulty.stats.tokenRequests).toBe(requestsAfterFailure + 1);
      } finally {
        clock.stop();
      }
    },
  );

  it('an already-expired token with a failing provider: refresh_failed, never the expired token', async () => {
    const key = { tenant: 'expired', connection: 'http500' };
    const tokens = edge.issueTokens();
    edge.setFault({ type: 'status', status: 500 });
    try {
      const reg = await caller.admin('register', {
        ...key,
        provider: 'edge',
        accessToken: tokens.accessToken,
        refreshToken: tokens.refreshToken,
        expiresAt: new Date(Date.now() - 1_000).toISOString(),
      });
      expect(reg).toMatchObject({ ok: true, credential: { hasAccessToken: true } });
      expect(Date.parse(reg.credential.expiresAt)).toBeLessThan(Date.now());

      const got = await caller.get(key);
      expect(got).toEqual({ ok: false, error: { code: 'refresh_failed', message: expect.any(String) } });
      expectNoSecrets(got, [tokens.accessToken, tokens.refreshToken]);
      expect(await describeCredential(caller, key)).toMatchObject({ status: 'failing', version: 1 });
    } finally {
      edge.clearFaults();
    }
    // The scheduler's next attempt (within the backoff cap) brings it back.
    const got = await waitFor(
      async () => {
        const reply = await caller.get(key);
        return reply.ok ? reply : undefined;
      },
      { timeoutMs: CAP_MS + 3_000, message: 'recovery' },
    );
    expect(got.token.version).toBe(2);
    expect(await callApi(edge, got.token.accessToken)).toBe(200);
  });

  it('a token expiring while the provider is unreachable: served while valid, then unavailable', async () => {
    const key = { tenant: 'expired', connection: 'reset' };
    const tokens = edge.issueTokens();
    edge.setFault({ type: 'reset' });
    try {
      const reg = await caller.admin('register', {
        ...key,
        provider: 'edge',
        accessToken: tokens.accessToken,
        refreshToken: tokens.refreshToken,
        expiresIn: 2,
      });
      expect(reg.ok).toBe(true);
      const expiresAt = Date.parse(reg.credential.expiresAt);
      const answers: { sent: number; at: number; reply: any }[] = [];
      while (Date.now() < expiresAt + 600) {
        const sent = Date.now();
        const reply = await caller.get(key);
        answers.push({ sent, at: Date.now(), reply });
        await sleep(50);
      }
      const before = answers.filter((a) => a.at < expiresAt - 20);
      const after = answers.filter((a) => a.sent > expiresAt + 20);
      expect(before.length).toBeGreaterThan(10);
      expect(after.length).toBeGreaterThan(3);
      for (const a of before)
        expect(a.reply).toMatchObject({ ok: true, token: { accessToken: tokens.accessToken, version: 1 } });
      for (const a of after)
        expect(a.reply).toEqual({ ok: false, error: { code: 'unavailable', message: expect.any(String) } });
      const c = await describeCredential(caller, key);
      expect(c).toMatchObject({ status: 'failing', version: 1, lastError: { code: 'unavailable' } });
      expect(c.failures).toBeGreaterThanOrEqual(1);
    } finally {
      edge.clearFaults();
    }
    await waitFor(async () => (await caller.get(key)).ok, { timeoutMs: CAP_MS + 3_000, message: 'recovery' });
  });

  it('invalid_client: misconfigured, failing with a long retry and a loud log line', async () => {
    const key = { tenant: 'misconfigured', connection: 'wrong-secret' };
    const tokens = edge.issueTokens();
    const reg = await caller.admin('register', {
      ...key,
      provider: 'edge-wrong-secret',
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn: 3600,
    });
    expect(reg.ok).toBe(true);
    const rejectedBefore = edge.stats.invalidClient;

    const t0 = Date.now();
    const refreshed = await caller.admin('refresh', key);
    const t1 = Date.now();
    expect(refreshed).toMatchObject({ ok: false, error: { code: 'refresh_failed' } });
    expect(edge.stats.invalidClient).toBe(rejectedBefore + 1);

    const c = await describeCredential(caller, key);
    expect(c).toMatchObject({ status: 'failing', failures: 1, version: 1, lastError: { code: 'refresh_failed' } });
    expect(c.lastError.message).toMatch(/invalid_client/);
    const retryAt = Date.parse(c.nextRefreshAt);
    expect(retryAt).toBeGreaterThanOrEqual(t0 + MISCONFIGURED_MS / 2);
    expect(retryAt).toBeLessThanOrEqual(t1 + MISCONFIGURED_MS);

    const line = await waitFor(() =>
      refresher.logs.lines
        .map((l) => JSON.parse(l))
        .find((l) => l.level === 'error' && /MISCONFIGURED/.test(l.msg) && l.provider === 'edge-wrong-secret'),
    );
    expect(line).toMatchObject({ code: 'invalid_client', tenant: key.tenant, connection: key.connection });
    expectNoSecrets(refresher.logs.text(), [tokens.accessToken, tokens.refreshToken]);

    // The valid token is still served, and the provider is not asked again any time soon.
    expect(await caller.get(key)).toMatchObject({ ok: true, token: { accessToken: tokens.accessToken, version: 1 } });
    await sleep(2_000);
    expect(edge.stats.invalidClient).toBe(rejectedBefore + 1);
    expect(await describeCredential(caller, key)).toMatchObject({ status: 'failing', failures: 1 });
  });

  it('an unknown error code inside an HTTP 200 is transient: backoff, not success, not misconfiguration', async () => {
    const key = { tenant: 'misconfigured', connection: 'unknown-200' };
    const { tokens } = await registerValid(edge, key, 'edge');
    edge.injectFault({ type: 'error_in_200', error: 'incorrect_client_credentials' }, 1);
    expect(await caller.admin('refresh', key)).toMatchObject({ ok: false, error: { code: 'refresh_failed' } });
    const t1 = Date.now();
    const c = await describeCredential(caller, key);
    // The scheduled retry may already have run; if not, it is on the backoff schedule.
    if (c.version === 1) {
      expect(c).toMatchObject({ status: 'failing', failures: 1, lastError: { code: 'refresh_failed' } });
      expect(c.lastError.message).toMatch(/HTTP 200 incorrect_client_credentials/);
      expect(Date.parse(c.nextRefreshAt)).toBeLessThanOrEqual(t1 + CAP_MS);
    }
    // The fault was a one-off: the backoff retry recovers the credential by itself.
    const recovered = await waitFor(
      async () => {
        const now = await describeCredential(caller, key);
        return now.status === 'active' && now.version === 2 ? now : undefined;
      },
      { timeoutMs: CAP_MS + 3_000, message: 'recovery on the backoff schedule' },
    );
    expect(recovered).toMatchObject({ failures: 0, lastError: null });
    expectNoSecrets(recovered, [tokens.refreshToken]);
  });

  it("kept serving and refreshing the other provider's credentials all along", async () => {
    stopBackground = true;
    await background;
    expect(healthyAnswers.length).toBeGreaterThan(100);
    const failures = healthyAnswers
      .filter((a) => !a.reply.ok)
      .map((a) => `${a.key.connection} at +${a.at - healthyAnswers[0]!.at} ms: ${JSON.stringify(a.reply.error)}`);
    expect(failures.slice(0, 10)).toEqual([]);
    for (const a of healthyAnswers) expect(Date.parse(a.reply.token.expiresAt)).toBeGreaterThan(a.at);
    const span = (healthyAnswers.at(-1)!.at - healthyAnswers[0]!.at) / 1000;
    for (const key of healthyKeys) {
      const versions = healthyAnswers.filter((a) => a.key === key).map((a) => a.reply.token.version as number);
      // 2 s tokens are refreshed about every second; allow for slack, but the work never stopped.
      expect(versions.at(-1)! - versions[0]!).toBeGreaterThan(span / 3);
    }
    expect(refresher.logs.lines.filter((l) => /"level":"error"/.test(l) && !/MISCONFIGURED/.test(l))).toEqual([]);
  });
});
