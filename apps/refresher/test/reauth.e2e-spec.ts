import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callApi, describeCredential, EventLog, providersFor, type Key } from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * invalid_grant ends a credential's refresh life: status reauth_required, one token.failed
 * event, no more requests to the provider, the still-valid token served until it expires,
 * and only a new registration brings it back.
 */
describe('refresher: reauth_required', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let events: EventLog;

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_reauth'),
      startSandboxProvider({ accessTokenTtlSeconds: 3 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      providersFor({ sandbox: { sandbox }, gh: { sandbox, preset: 'github', authMethod: 'client_secret_post' } }),
    );
    caller = await RawCaller.connect(nats.url);
    events = new EventLog(caller.nc);
  });

  afterAll(async () => {
    events?.close();
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  /** RFC 7009 at the sandbox, as the user revoking the app's grant would: the whole family dies. */
  async function revokeAtProvider(refreshToken: string): Promise<void> {
    const response = await fetch(sandbox.revocationUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from('sandbox-client:sandbox-secret').toString('base64')}`,
      },
      body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token' }).toString(),
    });
    expect(response.status).toBe(200);
  }

  function expectFailedEvent(key: Key, provider = 'sandbox') {
    const failed = events.of('failed', key.tenant, key.connection);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.data).toEqual({
      eventId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      tenant: key.tenant,
      connection: key.connection,
      provider,
      code: 'reauth_required',
      message: expect.any(String),
      attempt: 1,
      status: 'reauth_required',
      version: 1,
    });
  }

  it('a refresh token from a revoked family: reauth_required, no more requests, valid token served until expiry', async () => {
    const key = { tenant: 'reauth', connection: 'revoked-family' };
    const tokens = sandbox.issueTokens();
    const reg = await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn: 4,
    });
    expect(reg).toMatchObject({ ok: true, credential: { status: 'active', version: 1 } });
    const expiresAt = Date.parse(reg.credential.expiresAt);
    await revokeAtProvider(tokens.refreshToken);
    const requestsBefore = sandbox.stats.tokenRequests;

    // The scheduler's refresh is due about 2 s in; watch token.get from now until well after expiry.
    const answers: { sent: number; at: number; reply: any }[] = [];
    while (Date.now() < expiresAt + 2_000) {
      const sent = Date.now();
      const reply = await caller.get(key);
      answers.push({ sent, at: Date.now(), reply });
      await sleep(100);
    }

    const failedAt = events.of('failed', key.tenant, key.connection)[0]?.at;
    expect(failedAt, 'the scheduler tried and failed').toBeDefined();
    expect(failedAt!).toBeLessThan(expiresAt);
    expectFailedEvent(key);
    // One request (the one answered invalid_grant) and none in the ~4 s since.
    expect(Date.now() - failedAt!).toBeGreaterThan(3_000);
    expect(sandbox.stats.tokenRequests - requestsBefore).toBe(1);

    const described = await describeCredential(caller, key);
    expect(described).toMatchObject({
      status: 'reauth_required',
      version: 1,
      nextRefreshAt: null,
      lastError: { code: 'reauth_required' },
    });
    expect(described.failures).toBeGreaterThanOrEqual(1);
    expect(JSON.stringify(described)).not.toContain(tokens.refreshToken);

    const valid = answers.filter((a) => a.at < expiresAt - 20);
    const expired = answers.filter((a) => a.sent > expiresAt + 20);
    expect(valid.filter((a) => a.sent > failedAt!).length, 'answers after the failure, before expiry').toBeGreaterThan(
      3,
    );
    for (const a of valid)
      expect(a.reply).toMatchObject({ ok: true, token: { accessToken: tokens.accessToken, version: 1 } });
    expect(expired.length).toBeGreaterThan(5);
    for (const a of expired)
      expect(a.reply).toEqual({ ok: false, error: { code: 'reauth_required', message: expect.any(String) } });

    // An admin "refresh now" is refused as well, without asking the provider.
    expect(await caller.admin('refresh', key)).toMatchObject({ ok: false, error: { code: 'reauth_required' } });
    expect(sandbox.stats.tokenRequests - requestsBefore).toBe(1);

    // Re-registering with a new grant brings the credential back, and the scheduler takes it up again.
    const next = sandbox.issueTokens();
    const again = await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      accessToken: next.accessToken,
      refreshToken: next.refreshToken,
      expiresIn: next.expiresIn,
    });
    expect(again).toMatchObject({
      ok: true,
      credential: { status: 'active', version: 2, failures: 0, lastError: null },
    });
    expect(again.credential.nextRefreshAt).not.toBeNull();
    expect(await caller.get(key)).toMatchObject({ ok: true, token: { accessToken: next.accessToken, version: 2 } });
    const refreshed = await waitFor(
      async () => {
        const c = await describeCredential(caller, key);
        return c.version >= 3 ? c : undefined;
      },
      { timeoutMs: 5_000, message: 'scheduled refresh after re-registration' },
    );
    expect(refreshed).toMatchObject({ status: 'active', failures: 0 });
    const got = await caller.get(key);
    expect(got.token.version).toBeGreaterThanOrEqual(3);
    expect(await callApi(sandbox, got.token.accessToken)).toBe(200);
    expect(sandbox.everPresentedTwice()).toEqual([]);
    // Stop its 3 s refresh cycle, so that the next tests' request counts are theirs alone.
    expect(await caller.admin('revoke', key)).toMatchObject({ ok: true });
  });

  it('invalid_grant on an on-demand refresh: token.refresh answers reauth_required; re-registration heals', async () => {
    const key = { tenant: 'reauth', connection: 'oauth-error' };
    const tokens = sandbox.issueTokens();
    // An hour-long token, so that only the refreshes asked for here happen.
    const reg = await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn: 3600,
    });
    expect(reg.ok).toBe(true);
    sandbox.injectFault({ type: 'oauth_error', error: 'invalid_grant' }, 1);
    const requestsBefore = sandbox.stats.tokenRequests;

    const refreshed = await caller.admin('refresh', key);
    expect(refreshed).toEqual({ ok: false, error: { code: 'reauth_required', message: expect.any(String) } });
    await waitFor(() => events.of('failed', key.tenant, key.connection).length > 0);
    expectFailedEvent(key);
    expect(await describeCredential(caller, key)).toMatchObject({
      status: 'reauth_required',
      nextRefreshAt: null,
      lastError: { code: 'reauth_required' },
    });

    // Still valid: served. Reported rejected by an API: there is nothing left to serve.
    expect(await caller.get(key)).toMatchObject({ ok: true, token: { accessToken: tokens.accessToken, version: 1 } });
    expect(await caller.get({ ...key, rejectedVersion: 1 })).toMatchObject({
      ok: false,
      error: { code: 'reauth_required' },
    });
    expect(await caller.get({ ...key, minTtlSeconds: 86_400 })).toMatchObject({ ok: true, token: { version: 1 } });

    await sleep(3_000);
    expect(sandbox.stats.tokenRequests - requestsBefore).toBe(1);
    expect(events.of('failed', key.tenant, key.connection)).toHaveLength(1);

    // Re-registered with a refresh token only: the first token.get fetches a token on demand.
    const again = await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      refreshToken: sandbox.issueRefreshToken(),
    });
    expect(again).toMatchObject({ ok: true, credential: { status: 'active', version: 2, hasAccessToken: false } });
    const got = await caller.get(key);
    expect(got).toMatchObject({ ok: true, token: { version: 3 } });
    expect(await callApi(sandbox, got.token.accessToken)).toBe(200);
    expect(await describeCredential(caller, key)).toMatchObject({ status: 'active', failures: 0, lastError: null });
    expect(await caller.admin('revoke', key)).toMatchObject({ ok: true });
  });

  it('GitHub-style bad_refresh_token inside an HTTP 200 is invalid_grant for the github preset', async () => {
    const key = { tenant: 'reauth', connection: 'github' };
    const tokens = sandbox.issueTokens();
    const reg = await caller.admin('register', {
      ...key,
      provider: 'gh',
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn: 3600,
    });
    expect(reg.ok).toBe(true);
    sandbox.injectFault({ type: 'error_in_200', error: 'bad_refresh_token' }, 1);
    expect(await caller.admin('refresh', key)).toMatchObject({ ok: false, error: { code: 'reauth_required' } });
    await waitFor(() => events.of('failed', key.tenant, key.connection).length > 0);
    expectFailedEvent(key, 'gh');
    expect(await describeCredential(caller, key)).toMatchObject({ status: 'reauth_required', version: 1 });
    expect(await caller.get(key)).toMatchObject({ ok: true, token: { accessToken: tokens.accessToken, version: 1 } });
  });
});
