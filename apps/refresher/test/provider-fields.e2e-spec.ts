import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCredential, EventLog, providersFor } from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * A credential's own fields: `connectionConfig` fills the provider's URL placeholders (and
 * hostile values never reach a request), `tokenFields` are kept from token responses and
 * served as `extras` on token.get and in events, `metadata` goes in and comes back as given.
 */
describe('refresher: connectionConfig, extras, metadata', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let shops: SandboxProvider;
  let salesforce: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let events: EventLog;

  beforeAll(async () => {
    [nats, db, shops, salesforce] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_fields'),
      startSandboxProvider({ accessTokenTtlSeconds: 60 }),
      // As Salesforce documents it: no expires_in, instance_url in every answer, no rotation.
      startSandboxProvider({
        omitExpiresIn: true,
        rotateRefreshTokens: false,
        responseFields: { instance_url: 'https://acme.my.salesforce.com', issued_at: '1765300000000' },
      }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      providersFor({
        shop: { sandbox: shops, tokenUrl: `${shops.url}/shops/{shop}/oauth/token` },
        sf: { sandbox: salesforce, preset: 'salesforce', authMethod: 'client_secret_basic' },
      }),
    );
    caller = await RawCaller.connect(nats.url);
    events = new EventLog(caller.nc);
  });

  afterAll(async () => {
    events?.close();
    await caller?.close();
    await refresher?.close();
    await Promise.all([shops?.close(), salesforce?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('fills {shop} in the token URL: the provider sees the request on the filled path', async () => {
    const key = { tenant: 'acme', connection: 'store' };
    const reg = await caller.admin('register', {
      ...key,
      provider: 'shop',
      refreshToken: shops.issueRefreshToken(),
      connectionConfig: { shop: 'acme-store' },
    });
    expect(reg).toMatchObject({ ok: true, credential: { connectionConfig: { shop: 'acme-store' } } });
    const got = await caller.get(key);
    expect(got).toMatchObject({ ok: true, token: { accessToken: expect.any(String) } });
    expect(shops.tokenRequestPaths).toContain('/shops/acme-store/oauth/token');
    expect(shops.tokenRequestPaths.every((p) => p === '/shops/acme-store/oauth/token')).toBe(true);
  });

  it.each([
    ['evil.com/', { shop: 'evil.com/' }],
    ['..', { shop: '..' }],
    ['@', { shop: 'a@evil.com' }],
    [':', { shop: 'a:1' }],
    ['/', { shop: 'a/b' }],
    ['?', { shop: 'a?b' }],
    ['#', { shop: 'a#b' }],
    ['whitespace', { shop: 'a b' }],
    ['missing', {}],
    ['unknown key', { shop: 'ok', host: 'evil.com' }],
  ])('refuses a connectionConfig with %s, sending nothing', async (_what, connectionConfig) => {
    const before = shops.stats.tokenRequests;
    const key = { tenant: 'acme', connection: 'hostile' };
    const reg = await caller.admin('register', {
      ...key,
      provider: 'shop',
      refreshToken: shops.issueRefreshToken(),
      connectionConfig,
    });
    expect(reg).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect(reg.error.message).not.toContain('evil.com');
    const connect = await caller.admin('connect', { ...key, provider: 'shop', connectionConfig });
    expect(connect).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    expect((await caller.admin('describe', key)).error.code).toBe('not_found');
    expect(shops.stats.tokenRequests).toBe(before);
  });

  it('serves extras.instance_url on token.get and in token.refreshed; a later answer without it keeps it', async () => {
    const key = { tenant: 'acme', connection: 'crm' };
    const reg = await caller.admin('register', {
      ...key,
      provider: 'sf',
      refreshToken: salesforce.issueRefreshToken(),
    });
    expect(reg.ok).toBe(true);
    const got = await caller.get(key);
    expect(got).toMatchObject({
      ok: true,
      token: {
        expiresAt: null,
        extras: { instance_url: 'https://acme.my.salesforce.com', issued_at: '1765300000000' },
      },
    });
    await waitFor(() => events.of('refreshed', key.tenant, key.connection).length > 0, { message: 'token.refreshed' });
    expect(events.of('refreshed', key.tenant, key.connection)[0]!.data.extras).toEqual({
      instance_url: 'https://acme.my.salesforce.com',
      issued_at: '1765300000000',
    });

    salesforce.setResponseFields({ issued_at: '1765300009999' });
    const refreshed = await caller.admin('refresh', key);
    expect(refreshed.ok).toBe(true);
    const again = await caller.get(key);
    expect(again.token.version).toBe(got.token.version + 1);
    expect(again.token.extras).toEqual({ instance_url: 'https://acme.my.salesforce.com', issued_at: '1765300009999' });
    await waitFor(() => events.of('refreshed', key.tenant, key.connection).length > 1, { message: 'token.refreshed' });
    expect(events.of('refreshed', key.tenant, key.connection)[1]!.data.extras.instance_url).toBe(
      'https://acme.my.salesforce.com',
    );
  });

  it('keeps metadata as given (describe, list) and refuses it past its limits', async () => {
    const key = { tenant: 'meta', connection: 'crm' };
    const metadata = { displayName: 'Acme Corp', 'customer.id': 'cus_123', empty: '' };
    const reg = await caller.admin('register', {
      ...key,
      provider: 'sf',
      refreshToken: salesforce.issueRefreshToken(),
      metadata,
    });
    expect(reg).toMatchObject({ ok: true, credential: { metadata } });
    expect((await describeCredential(caller, key)).metadata).toEqual(metadata);
    const listed = await caller.list({ tenant: 'meta' });
    expect(listed.items[0].metadata).toEqual(metadata);

    const tooMany = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    const tooBig = {
      a: 'x'.repeat(1_000),
      b: 'x'.repeat(1_000),
      c: 'x'.repeat(1_000),
      d: 'x'.repeat(1_000),
      e: 'x'.repeat(200),
    };
    for (const bad of [tooMany, tooBig, { 'bad key': 'v' }, { n: 1 }]) {
      const refused = await caller.admin('register', {
        tenant: 'meta',
        connection: 'limits',
        provider: 'sf',
        refreshToken: salesforce.issueRefreshToken(),
        metadata: bad,
      });
      expect(refused).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    }
    // A registration without metadata replaces the credential's: what is stored is what was last given.
    const bare = await caller.admin('register', {
      ...key,
      provider: 'sf',
      refreshToken: salesforce.issueRefreshToken(),
    });
    expect(bare.credential.metadata).toBeUndefined();
  });
});
