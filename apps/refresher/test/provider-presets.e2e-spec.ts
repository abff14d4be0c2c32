import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  type NatsServerHandle,
  type SandboxOptions,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProviderConfig } from '../src/providers/provider.types.js';
import { describeCredential, providersFor, type ProviderEntry } from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/** LinkedIn: 365 days from the grant, counting down on every answer. */
const LINKEDIN_GRANT_SECONDS = 31_536_000;
/** Intuit: what its token endpoint says in `x_refresh_token_expires_in`. */
const INTUIT_GRANT_SECONDS = 8_726_400;

/**
 * Each added preset against a sandbox that answers the way that provider documents: its
 * client authentication (the other one is refused), rotation or none, missing fields, the
 * extra fields it sends. The preset's endpoints are replaced by the sandbox's; everything
 * else comes from the preset.
 */
const SANDBOXES: Record<string, SandboxOptions> = {
  salesforce: {
    clientAuthentication: 'post',
    omitExpiresIn: true,
    rotateRefreshTokens: false,
    responseFields: { instance_url: 'https://acme.my.salesforce.com', id: 'https://login.salesforce.com/id/00D/005' },
  },
  hubspot: { clientAuthentication: 'post', rotateRefreshTokens: false, accessTokenTtlSeconds: 1800 },
  xero: { clientAuthentication: 'basic', reuseGraceSeconds: 1800, accessTokenTtlSeconds: 1800 },
  zoom: { clientAuthentication: 'basic', accessTokenTtlSeconds: 3600 },
  shopify: { clientAuthentication: 'post' },
  atlassian: { clientAuthentication: 'post', accessTokenTtlSeconds: 3600 },
  notion: {
    clientAuthentication: 'basic',
    omitExpiresIn: true,
    rotateRefreshTokens: false,
    responseFields: { workspace_id: 'ws-1', workspace_name: 'Acme', bot_id: 'bot-1', owner: { type: 'user' } },
  },
  dropbox: {
    clientAuthentication: 'post',
    rotateRefreshTokens: false,
    accessTokenTtlSeconds: 14_400,
    responseFields: { account_id: 'dbid:abc', uid: '12345' },
  },
  linkedin: {
    clientAuthentication: 'post',
    rotateRefreshTokens: false,
    accessTokenTtlSeconds: 5_184_000,
    responseFields: { refresh_token_expires_in: LINKEDIN_GRANT_SECONDS },
  },
  // Intuit's documented answer: a rotating refresh token, `x_refresh_token_expires_in` (about
  // 101 days) and no `refresh_token_expires_in`.
  intuit: {
    clientAuthentication: 'basic',
    accessTokenTtlSeconds: 3600,
    responseFields: { x_refresh_token_expires_in: INTUIT_GRANT_SECONDS },
  },
};

describe('refresher: provider presets against a sandbox answering as each provider documents', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const sandboxes: Record<string, SandboxProvider> = {};
  let providers: Map<string, ProviderConfig>;
  let refresher: TestRefresher;
  let caller: RawCaller;

  beforeAll(async () => {
    [nats, db] = await Promise.all([startNatsServer(), createTestDatabase('tk_presets')]);
    for (const [preset, options] of Object.entries(SANDBOXES)) sandboxes[preset] = await startSandboxProvider(options);
    const entries: Record<string, ProviderEntry> = {};
    for (const preset of Object.keys(SANDBOXES)) {
      // authMethod undefined: the preset's own client authentication is what the sandbox accepts.
      entries[preset] = { sandbox: sandboxes[preset], preset, authMethod: undefined };
    }
    entries.shopify.tokenUrl = `${sandboxes.shopify.url}/shops/{shop}/oauth/token`;
    entries.atlassian.scopes = ['read:jira-work'];
    entries.xero.scopes = ['accounting.transactions'];
    providers = providersFor(entries);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      providers,
    );
    caller = await RawCaller.connect(nats.url);
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([...Object.values(sandboxes).map((s) => s.close()), nats?.stop()]);
    await db?.drop();
  });

  /** Registers a refresh token, gets a token (first refresh) and refreshes once more. */
  async function twoRefreshes(preset: string, extra: Record<string, unknown> = {}) {
    const key = { tenant: 'presets', connection: preset };
    const sandbox = sandboxes[preset];
    const registered = sandbox.issueRefreshToken();
    const reg = await caller.admin('register', {
      ...key,
      provider: preset,
      refreshToken: registered,
      ...extra,
    });
    expect(reg, JSON.stringify(reg.error)).toMatchObject({ ok: true });
    const first = await caller.get(key);
    expect(first, JSON.stringify(first.error)).toMatchObject({ ok: true });
    const again = await caller.admin('refresh', key);
    expect(again, JSON.stringify(again.error)).toMatchObject({ ok: true });
    const second = await caller.get(key);
    expect(second.token.version).toBe(first.token.version + 1);
    expect(sandbox.stats.invalidClient).toBe(0);
    expect(sandbox.everPresentedTwice()).toEqual([]);
    return {
      key,
      sandbox,
      registered,
      first: first.token,
      second: second.token,
      credential: await describeCredential(caller, key),
    };
  }

  /** The stored grant end is `lifetime` seconds after a request sent between `from` and `to`. */
  function expectEndWithin(endsAt: string | undefined, from: number, to: number, lifetimeSeconds: number) {
    expect(endsAt, 'refreshTokenExpiresAt in describe').toEqual(expect.any(String));
    const end = Date.parse(endsAt!);
    expect(end).toBeGreaterThanOrEqual(from + lifetimeSeconds * 1000);
    expect(end).toBeLessThanOrEqual(to + lifetimeSeconds * 1000);
  }

  /** A refresh-token grant sent to the sandbox directly, as a client repeating a lost request would. */
  async function exchangeAtSandbox(sandbox: SandboxProvider, refreshToken: string) {
    return fetch(sandbox.tokenUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from('sandbox-client:sandbox-secret').toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
    });
  }

  it('salesforce: no expires_in (served without expiry), instance_url kept, the refresh token stays', async () => {
    const { first, second, sandbox } = await twoRefreshes('salesforce');
    expect(first.expiresAt).toBeNull();
    expect(second.extras).toEqual({
      instance_url: 'https://acme.my.salesforce.com',
      id: 'https://login.salesforce.com/id/00D/005',
    });
    expect(sandbox.stats.refreshGrants).toBe(2);
  });

  it('hubspot: 30-minute tokens, body credentials, no rotation', async () => {
    const { first } = await twoRefreshes('hubspot');
    const lifetime = Date.parse(first.expiresAt) - Date.now();
    expect(lifetime).toBeGreaterThan(1_700_000);
    expect(lifetime).toBeLessThanOrEqual(1_800_000);
  });

  it('xero: rotating refresh tokens (the newest is always presented), 30-minute reuse grace named, offline_access asked', async () => {
    const { key, sandbox, registered } = await twoRefreshes('xero');
    expect(sandbox.stats.refreshGrants).toBe(2);
    // As Xero documents: within the grace a rotated-out token is still honoured (a refresh
    // whose answer was lost can be repeated) without the family being revoked...
    expect((await exchangeAtSandbox(sandbox, registered)).status).toBe(200);
    expect(sandbox.stats).toMatchObject({ reuseDetected: 0, familiesRevoked: 0 });
    // ...and the credential goes on rotating on its newest token.
    expect(await caller.admin('refresh', key)).toMatchObject({ ok: true });
    expect(sandbox.everPresentedTwice()).toEqual([]);
    expect(providers.get('xero')).toMatchObject({
      rotation: 'rotates',
      reuseGraceSeconds: 1800,
      scopes: ['offline_access', 'accounting.transactions'],
    });
  });

  it('zoom: rotating refresh tokens with Basic client authentication', async () => {
    const { sandbox } = await twoRefreshes('zoom');
    expect(sandbox.stats.refreshGrants).toBe(2);
  });

  it('shopify: the shop fills the URL; an offline token without refresh token or expiry is served, never refreshed', async () => {
    const sandbox = sandboxes.shopify;
    const key = { tenant: 'presets', connection: 'shopify' };
    const missing = await caller.admin('register', { ...key, provider: 'shopify', accessToken: 'shpat_x' });
    expect(missing).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    const tokens = sandbox.issueTokens();
    const reg = await caller.admin('register', {
      ...key,
      provider: 'shopify',
      accessToken: tokens.accessToken,
      connectionConfig: { shop: 'acme-store' },
    });
    expect(reg).toMatchObject({
      ok: true,
      credential: { nextRefreshAt: null, connectionConfig: { shop: 'acme-store' } },
    });
    expect((await caller.get(key)).token).toMatchObject({ accessToken: tokens.accessToken, expiresAt: null });
    // A refresh token of the shop's grant is exchanged on the shop's own path.
    await twoRefreshes('shopify', { connectionConfig: { shop: 'acme-store' } });
    expect(new Set(sandbox.tokenRequestPaths)).toEqual(new Set(['/shops/acme-store/oauth/token']));
  });

  it('atlassian: rotating, body credentials, offline_access and the api.atlassian.com audience', async () => {
    await twoRefreshes('atlassian');
    expect(providers.get('atlassian')).toMatchObject({
      rotation: 'rotates',
      scopes: ['offline_access', 'read:jira-work'],
      authorizeParams: { audience: 'api.atlassian.com' },
    });
  });

  it('notion: no expiry, Basic authentication, the workspace kept as extras (objects are not)', async () => {
    const { second } = await twoRefreshes('notion');
    expect(second.expiresAt).toBeNull();
    expect(second.extras).toEqual({ workspace_id: 'ws-1', workspace_name: 'Acme', bot_id: 'bot-1' });
  });

  it('dropbox: token_access_type=offline on authorize, no rotation, the account kept', async () => {
    const { second } = await twoRefreshes('dropbox');
    expect(second.extras).toEqual({ account_id: 'dbid:abc', uid: '12345' });
    expect(providers.get('dropbox')?.authorizeParams).toMatchObject({ token_access_type: 'offline' });
  });

  it('linkedin: refresh_token_expires_in is read and stored; describe shows the grant end, which follows the answers', async () => {
    const sent = Date.now();
    const { key, credential } = await twoRefreshes('linkedin');
    expect(providers.get('linkedin')?.refreshTokenExpiresInField).toBe('refresh_token_expires_in');
    expectEndWithin(credential.refreshTokenExpiresAt, sent, Date.now(), LINKEDIN_GRANT_SECONDS);
    // A later answer counts down from the same fixed end: an hour less is an hour earlier.
    sandboxes.linkedin.setResponseFields({ refresh_token_expires_in: LINKEDIN_GRANT_SECONDS - 3_600 });
    const again = Date.now();
    expect(await caller.admin('refresh', key)).toMatchObject({ ok: true });
    const later = await describeCredential(caller, key);
    expectEndWithin(later.refreshTokenExpiresAt, again, Date.now(), LINKEDIN_GRANT_SECONDS - 3_600);
  });

  it('intuit: rotating, x_refresh_token_expires_in read and stored (describe), invalid_grant ends the credential', async () => {
    const sent = Date.now();
    const { key, sandbox, credential } = await twoRefreshes('intuit');
    expect(providers.get('intuit')?.refreshTokenExpiresInField).toBe('x_refresh_token_expires_in');
    expectEndWithin(credential.refreshTokenExpiresAt, sent, Date.now(), INTUIT_GRANT_SECONDS);
    expect(sandbox.stats.refreshGrants).toBe(2);
    sandbox.injectFault({ type: 'oauth_error', status: 400, error: 'invalid_grant' });
    const refused = await caller.admin('refresh', key);
    expect(refused).toMatchObject({ ok: false, error: { code: 'reauth_required' } });
    expect((await describeCredential(caller, key)).status).toBe('reauth_required');
  });
});
