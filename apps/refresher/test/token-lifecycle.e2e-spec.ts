import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

describe('refresher: register, get, refresh, describe, list, revoke', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  const events: { subject: string; data: any }[] = [];

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_life'),
      startSandboxProvider({ accessTokenTtlSeconds: 30 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    caller = await RawCaller.connect(nats.url);
    caller.nc.subscribe('token.>', {
      callback: (_e, m) => {
        events.push({ subject: m.subject, data: m.json() });
      },
    });
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('registers with only a refresh token and serves a token fetched on demand', async () => {
    const refreshToken = sandbox.issueRefreshToken();
    const reg = await caller.admin('register', {
      tenant: 'acme',
      connection: 'github',
      provider: 'sandbox',
      refreshToken,
    });
    expect(reg.ok).toBe(true);
    expect(reg.credential).toMatchObject({
      tenant: 'acme',
      connection: 'github',
      status: 'active',
      hasRefreshToken: true,
      hasAccessToken: false,
    });
    expect(JSON.stringify(reg)).not.toContain(refreshToken);

    const got = await caller.get({ tenant: 'acme', connection: 'github' });
    expect(got.ok).toBe(true);
    expect(got.token).toMatchObject({
      tenant: 'acme',
      connection: 'github',
      provider: 'sandbox',
      tokenType: 'Bearer',
      version: 2,
    });
    expect(got.token.accessToken).toMatch(/^at_/);
    expect(Date.parse(got.token.expiresAt)).toBeGreaterThan(Date.now() + 20_000);
    expect(sandbox.presentations(refreshToken)).toBe(1);

    // Second call: from memory, same version, no new provider request.
    const before = sandbox.stats.tokenRequests;
    const again = await caller.get({ tenant: 'acme', connection: 'github' });
    expect(again.token).toEqual(got.token);
    expect(sandbox.stats.tokenRequests).toBe(before);
    await waitFor(() => events.find((e) => e.subject === 'token.refreshed.acme.github'));
  });

  it('registers an access token and serves it as version 1 with a registered event', async () => {
    const tokens = sandbox.issueTokens();
    const reg = await caller.admin('register', {
      tenant: 'acme',
      connection: 'slack',
      provider: 'sandbox',
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn: '3600',
      scope: 'read',
    });
    expect(reg.credential).toMatchObject({ version: 1, hasAccessToken: true, scope: 'read' });
    const got = await caller.get({ tenant: 'acme', connection: 'slack' });
    expect(got.token).toMatchObject({ accessToken: tokens.accessToken, version: 1, scope: 'read' });
    const event = await waitFor(() => events.find((e) => e.subject === 'token.registered.acme.slack'));
    expect(event.data).toMatchObject({
      tenant: 'acme',
      connection: 'slack',
      version: 1,
      accessToken: tokens.accessToken,
    });
    expect(event.data.eventId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refreshes on token.refresh and rotates the refresh token', async () => {
    const before = await caller.admin('describe', { tenant: 'acme', connection: 'slack' });
    const refreshed = await caller.admin('refresh', { tenant: 'acme', connection: 'slack' });
    expect(refreshed.ok).toBe(true);
    expect(refreshed.credential.version).toBe(before.credential.version + 1);
    const got = await caller.get({ tenant: 'acme', connection: 'slack' });
    expect(got.token.version).toBe(refreshed.credential.version);
    expect(sandbox.everPresentedTwice()).toEqual([]);
  });

  it('describes without secrets and lists with paging', async () => {
    for (let i = 0; i < 5; i++) {
      await caller.admin('register', {
        tenant: 'paged',
        connection: `c${i}`,
        provider: 'sandbox',
        accessToken: `at_planted_${i}`,
        expiresIn: 3600,
      });
    }
    const page1 = await caller.list({ tenant: 'paged', limit: 2 });
    expect(page1.items.map((c: any) => c.connection)).toEqual(['c0', 'c1']);
    const page2 = await caller.list({ tenant: 'paged', limit: 2, cursor: page1.nextCursor });
    expect(page2.items.map((c: any) => c.connection)).toEqual(['c2', 'c3']);
    const page3 = await caller.list({ tenant: 'paged', limit: 2, cursor: page2.nextCursor });
    expect(page3.items.map((c: any) => c.connection)).toEqual(['c4']);
    expect(page3.nextCursor).toBeUndefined();
    expect(JSON.stringify([page1, page2, page3])).not.toContain('at_planted');
    const described = await caller.admin('describe', { tenant: 'paged', connection: 'c0' });
    expect(described.credential).toMatchObject({ status: 'active', version: 1, failures: 0, lastError: null });
    expect(JSON.stringify(described)).not.toContain('at_planted');
  });

  it('revokes locally and at the provider; a revoked credential is never served', async () => {
    const tokens = sandbox.issueTokens();
    await caller.admin('register', {
      tenant: 'acme',
      connection: 'gone',
      provider: 'sandbox',
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn: 3600,
    });
    expect((await caller.get({ tenant: 'acme', connection: 'gone' })).ok).toBe(true);
    const revocationsBefore = sandbox.stats.revocations;
    const revoked = await caller.admin('revoke', { tenant: 'acme', connection: 'gone' });
    expect(revoked).toMatchObject({ ok: true, providerRevoked: true });
    expect(sandbox.stats.revocations).toBeGreaterThan(revocationsBefore);
    const got = await caller.get({ tenant: 'acme', connection: 'gone' });
    expect(got).toEqual({ ok: false, error: { code: 'revoked', message: expect.any(String) } });
    await waitFor(() => events.find((e) => e.subject === 'token.revoked.acme.gone'));
  });

  it('client_credentials: registered without tokens, fetched on first use with client_secret_post, refreshed without a refresh token', async () => {
    const before = sandbox.stats.clientCredentialsGrants;
    const reg = await caller.admin('register', { tenant: 'svc', connection: 'billing', provider: 'sandbox-cc' });
    expect(reg.credential).toMatchObject({ status: 'active', hasAccessToken: false, hasRefreshToken: false });
    const got = await caller.get({ tenant: 'svc', connection: 'billing' });
    expect(got.ok).toBe(true);
    expect(got.token.accessToken).toMatch(/^at_/);
    expect(sandbox.stats.clientCredentialsGrants).toBeGreaterThan(before);
    const refreshed = await caller.admin('refresh', { tenant: 'svc', connection: 'billing' });
    expect(refreshed.credential).toMatchObject({
      version: got.token.version + 1,
      hasRefreshToken: false,
      status: 'active',
    });
    expect(Date.parse(refreshed.credential.nextRefreshAt)).toBeGreaterThan(Date.now());
  });

  it('answers not_found and unknown_provider with contract codes', async () => {
    expect((await caller.get({ tenant: 'nobody', connection: 'x' })).error.code).toBe('not_found');
    expect(
      (await caller.admin('register', { tenant: 'a', connection: 'b', provider: 'nope', accessToken: 'x' })).error.code,
    ).toBe('unknown_provider');
  });
});
