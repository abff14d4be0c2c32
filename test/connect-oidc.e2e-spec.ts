/**
 * The connect flow end to end, against a real authorization server
 * (panva's oidc-provider: PKCE S256 required, refresh-token rotation, RFC 9207 `iss`),
 * driven by a real headless chromium that logs in and consents. Two refresher replicas share
 * one database and one public address (a front proxy the test steers), the audit app
 * stores the trail, and a resource server (introspection) judges the tokens served.
 */
import {
  createTestDatabase,
  freePort,
  sleep,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TestDatabase,
} from '@tokenkeeper/testing';
// By path, not from the package index: oidc-provider and playwright load only where a test drives a browser.
import { BrowserHarness } from '../libs/testing/src/browser.harness.js';
import { OidcProviderHarness } from '../libs/testing/src/oidc-provider.harness.js';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEnv, startTestAudit, type TestAudit } from '../apps/audit/test/audit.harness.js';
import { parseProvidersDocument } from '../apps/refresher/src/providers/providers-file.loader.js';
import type { ProviderConfig } from '../apps/refresher/src/providers/provider.types.js';
import {
  RawCaller,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';
import { FrontProxy, startReturnApp, withParam } from './connect-oidc.fixtures.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const TENANT = 'acme';
const LOGIN = { user: 'alice', password: 'wonderland' };
/** A page that says no: the refresher's words may vary, these are the ones a person needs. */
const REFUSED = /(invalid|expired|already used|unknown|refused|denied|failed|mismatch|not valid)/i;

describe('connect flow with oidc-provider and chromium', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let auditDb: TestDatabase;
  let audit: TestAudit;
  let oidc: OidcProviderHarness;
  let otherIdp: OidcProviderHarness;
  let front: FrontProxy;
  let returnApp: Awaited<ReturnType<typeof startReturnApp>>;
  let replicaA: TestRefresher;
  let replicaB: TestRefresher;
  let portA: number;
  let portB: number;
  let caller: RawCaller;
  let browser: BrowserHarness;
  /** Every code, state and token the flows handled: none may appear in a log line. */
  const planted = new Set<string>();

  beforeAll(async () => {
    [nats, db, auditDb, front, returnApp, portA, portB] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_connect'),
      createTestDatabase('tk_connect_audit'),
      FrontProxy.start(),
      startReturnApp(),
      freePort(),
      freePort(),
    ]);
    const redirectUri = `${front.url}/oauth/callback`;
    [oidc, otherIdp] = await Promise.all([
      OidcProviderHarness.start({ redirectUris: [redirectUri], accounts: { [LOGIN.user]: LOGIN.password } }),
      OidcProviderHarness.start({ redirectUris: [redirectUri] }),
    ]);
    const providers = connectProviders(oidc, returnApp.origin);
    const keys = testKeys();
    const env = (port: number) =>
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys },
        { HTTP_PORT: String(port), PUBLIC_BASE_URL: front.url, LOG_LEVEL: 'trace' },
      );
    replicaA = await startTestRefresher(env(portA), providers);
    replicaB = await startTestRefresher(env(portB), providers);
    front.targetPort = portA;
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url));
    caller = await RawCaller.connect(nats.url);
    browser = await BrowserHarness.launch();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await caller?.close();
    await audit?.close();
    await replicaB?.close();
    await replicaA?.close();
    await Promise.all([oidc?.close(), otherIdp?.close(), front?.close(), returnApp?.close(), nats?.stop()]);
    await Promise.all([db?.drop(), auditDb?.drop()]);
  });

  const connect = (connection: string, extra: Record<string, unknown> = {}) =>
    caller.admin('connect', { tenant: TENANT, connection, provider: 'oidc', ...extra });

  async function startConnect(connection: string, extra: Record<string, unknown> = {}): Promise<string> {
    const reply = await connect(connection, extra);
    expect(reply).toMatchObject({
      ok: true,
      url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/connect\//),
      expiresAt: expect.any(String),
    });
    expect(reply.url.startsWith(`${front.url}/connect/`)).toBe(true);
    return reply.url;
  }

  /** Opens the connect URL, presses its button, logs in and consents: where the browser ends (after the callback). */
  async function consentThrough(url: string, inBrowser: BrowserHarness = browser) {
    const tab = await inBrowser.open(url);
    await tab.pressConnect();
    const end = await tab.loginAndConsent(LOGIN.user, LOGIN.password);
    return { tab, end };
  }

  /** As consentThrough, with the callback held at the front proxy: its URL, unused. */
  async function heldCallback(url: string): Promise<string> {
    const held = await front.holdNext(async () => (await consentThrough(url)).tab.page.close());
    plantCallback(held);
    return held;
  }

  function plantCallback(callbackUrl: string): void {
    const params = new URL(callbackUrl).searchParams;
    for (const name of ['code', 'state']) if (params.get(name)) planted.add(params.get(name)!);
  }

  async function describeCredential(connection: string) {
    return caller.admin('describe', { tenant: TENANT, connection });
  }

  async function expectNoCredential(connection: string) {
    const reply = await describeCredential(connection);
    expect(reply.ok).toBe(false);
    expect(reply.error.code).toBe('not_found');
  }

  /** Opens `url` in a fresh tab: the refresher must refuse it with a clear page. */
  async function expectRefusedPage(url: string) {
    const tab = await browser.open(url);
    const page = await tab.result();
    await tab.page.close();
    expect(page.status).toBeGreaterThanOrEqual(400);
    expect(page.status).toBeLessThan(500);
    expect(page.text).toMatch(REFUSED);
    return page;
  }

  async function auditTypes(connection: string): Promise<string[]> {
    const reply = await caller.auditQuery({ tenant: TENANT, connection });
    expect(reply.ok).toBe(true);
    return reply.items.map((r: { type: string }) => r.type);
  }

  it('full flow: credential active, token.get serves a token the resource server accepts, refreshes rotate', async () => {
    const url = await startConnect('crm');
    expect(oidc.authorizationRequests).toHaveLength(0);
    const { tab, end } = await consentThrough(url);

    // What the refresher asked the provider for (step 2).
    const asked = oidc.authorizationRequests.at(-1)!;
    expect(Object.fromEntries(asked)).toMatchObject({
      response_type: 'code',
      client_id: oidc.clientId,
      redirect_uri: `${front.url}/oauth/callback`,
      code_challenge_method: 'S256',
      prompt: 'consent',
    });
    expect(asked.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(asked.get('state')!.length).toBeGreaterThanOrEqual(22);
    expect(asked.get('scope')!.split(' ')).toEqual(expect.arrayContaining(['openid', 'offline_access', 'api:read']));

    // The callback carried code, state and iss; the result page says so.
    const callbackUrl = front.callbacks.at(-1)!;
    plantCallback(callbackUrl);
    expect(new URL(callbackUrl).searchParams.get('iss')).toBe(oidc.issuer);
    expect(end.status).toBe(200);
    expect(end.text).toMatch(/connected/i);
    if (process.env.CONNECT_SCREENSHOT) await tab.screenshot(process.env.CONNECT_SCREENSHOT);
    await tab.page.close();

    // The code exchange: authorization_code with the verifier, the client authenticated.
    const exchange = oidc.tokenRequests.find((r) => r.params.get('grant_type') === 'authorization_code')!;
    expect(exchange.params.get('code')).toBe(new URL(callbackUrl).searchParams.get('code'));
    expect(exchange.params.get('code_verifier')).toMatch(/^[A-Za-z0-9._~-]{43,128}$/);
    planted.add(exchange.params.get('code_verifier')!);
    expect(exchange.params.get('redirect_uri')).toBe(`${front.url}/oauth/callback`);
    expect(exchange.basicAuth).toBe(true);

    const credential = await describeCredential('crm');
    expect(credential).toMatchObject({
      ok: true,
      credential: { tenant: TENANT, connection: 'crm', provider: 'oidc', status: 'active' },
    });

    const got = await caller.get({ tenant: TENANT, connection: 'crm' });
    expect(got.ok).toBe(true);
    planted.add(got.token.accessToken);
    expect(await oidc.callResource(got.token.accessToken)).toMatchObject({ status: 200, body: { sub: LOGIN.user } });

    // The next refresh presents the code exchange's refresh token and gets a new one; the one
    // after presents that new one: the refresher kept the rotation.
    expect((await caller.admin('refresh', { tenant: TENANT, connection: 'crm' })).ok).toBe(true);
    const first = refreshTokensPresented().at(-1)!;
    expect((await caller.admin('refresh', { tenant: TENANT, connection: 'crm' })).ok).toBe(true);
    const second = refreshTokensPresented().at(-1)!;
    expect(second).not.toBe(first);
    planted.add(first).add(second);

    const fresh = await caller.get({ tenant: TENANT, connection: 'crm' });
    planted.add(fresh.token.accessToken);
    expect(fresh.token.version).toBeGreaterThan(got.token.version);
    expect((await oidc.callResource(fresh.token.accessToken)).status).toBe(200);

    // Audit: started, then connected.
    await waitFor(async () => (await auditTypes('crm')).includes('connected'), { timeoutMs: 20_000 });
    expect(await auditTypes('crm')).toEqual(expect.arrayContaining(['connect_started', 'connected']));

    // A replay of that callback, and a second use of the connect URL: refused, nothing changes.
    const before = (await describeCredential('crm')).credential;
    await expectRefusedPage(callbackUrl);
    await expectRefusedPage(url);
    const after = (await describeCredential('crm')).credential;
    expect(after.version).toBe(before.version);
    expect(after.status).toBe('active');

    // Finally the rotated-away refresh token is dead at the provider (this revokes the grant).
    expect((await oidc.refresh(first)).body.error).toBe('invalid_grant');
  }, 120_000);

  it('an allowed returnUrl gets the browser back to the app', async () => {
    const url = await startConnect('crm-return', { returnUrl: `${returnApp.origin}/settings/connected` });
    const { tab, end } = await consentThrough(url);
    await tab.page.close();
    plantCallback(front.callbacks.at(-1)!);
    expect(new URL(end.url).origin).toBe(returnApp.origin);
    expect(end.text).toContain('back at the app');
    expect((await describeCredential('crm-return')).credential.status).toBe('active');
  }, 60_000);

  it('tokenctl connect prints the link and exits 0 once the browser connected the credential', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        '@swc-node/register/esm-register',
        'apps/tokenctl/src/main.ts',
        'connect',
        TENANT,
        'crm-cli',
        '--provider',
        'oidc',
        '--wait',
        '60',
      ],
      {
        cwd: ROOT,
        env: { ...process.env, NATS_URL: nats.url, NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    await waitFor(() => /\/connect\/\S+/.test(stdout), { timeoutMs: 30_000 });
    const url = stdout.match(/(http\S+\/connect\/\S+)/)![1];
    expect(url.startsWith(`${front.url}/connect/`)).toBe(true);
    const { tab, end } = await consentThrough(url);
    await tab.page.close();
    plantCallback(front.callbacks.at(-1)!);
    expect(end.text).toMatch(/connected/i);
    expect(await exited).toBe(0);
    expect(stdout).toMatch(/connected acme\/crm-cli/);
    expect((await describeCredential('crm-cli')).credential.status).toBe('active');
  }, 90_000);

  it('a returnUrl on an origin not allowed is refused at connect time', async () => {
    const reply = await connect('crm-evil', { returnUrl: 'https://evil.example/steal' });
    expect(reply.ok).toBe(false);
    expect(reply.error.code).toBe('bad_request');
    // Same host, another port: another origin.
    const near = await connect('crm-evil', { returnUrl: `${returnApp.origin.replace(/:\d+$/, ':1')}/x` });
    expect(near.ok).toBe(false);
    expect(near.error.code).toBe('bad_request');
    await expectNoCredential('crm-evil');
  });

  it('a refused consent: connect_failed audit record, a clear page, no credential', async () => {
    const url = await startConnect('crm-denied');
    const tab = await browser.open(url);
    await tab.pressConnect();
    if (await tab.page.locator('input[name=login]').count()) await tab.login(LOGIN.user, LOGIN.password);
    const end = await tab.deny();
    await tab.page.close();
    const callbackUrl = front.callbacks.at(-1)!;
    plantCallback(callbackUrl);
    expect(new URL(callbackUrl).searchParams.get('error')).toBe('access_denied');
    expect(end.status).toBeGreaterThanOrEqual(400);
    expect(end.text).toMatch(REFUSED);
    await expectNoCredential('crm-denied');
    await waitFor(async () => (await auditTypes('crm-denied')).includes('connect_failed'), { timeoutMs: 20_000 });
    expect(await auditTypes('crm-denied')).not.toContain('connected');
  }, 60_000);

  it('a tampered state is refused and burns nothing; the genuine callback, served by the other replica, connects', async () => {
    const held = await heldCallback(await startConnect('crm-state'));
    const state = new URL(held).searchParams.get('state')!;
    const tampered = withParam(held, 'state', `${state.slice(0, -1)}${state.endsWith('A') ? 'B' : 'A'}`);
    await expectRefusedPage(tampered);
    await expectNoCredential('crm-state');

    // The session was created and the browser sent to the provider through replica A; B
    // serves the callback, from the shared database.
    front.targetPort = portB;
    try {
      const tab = await browser.open(held);
      const end = await tab.result();
      await tab.page.close();
      expect(end.status).toBe(200);
      expect(end.text).toMatch(/connected/i);
    } finally {
      front.targetPort = portA;
    }
    expect((await describeCredential('crm-state')).credential.status).toBe('active');
  }, 60_000);

  it("a callback with another provider's iss is refused (RFC 9207), no change", async () => {
    const held = await heldCallback(await startConnect('crm-mixup'));
    expect((await expectRefusedPage(withParam(held, 'iss', otherIdp.issuer))).text).toMatch(/issuer mismatch/);
    await expectNoCredential('crm-mixup');
    // Without iss, on a session of its own: the one above is spent, and its refusal ("already
    // used") would pass even if a callback without iss were exchanged.
    const unsigned = await heldCallback(await startConnect('crm-noiss'));
    const without = new URL(unsigned);
    without.searchParams.delete('iss');
    expect((await expectRefusedPage(without.toString())).text).toMatch(/issuer mismatch/);
    await expectNoCredential('crm-noiss');
    for (const callback of [held, unsigned]) {
      expect(
        oidc.tokenRequests.filter((r) => r.params.get('code') === new URL(callback).searchParams.get('code')),
      ).toHaveLength(0);
    }
  }, 60_000);

  it('an expired session is refused, at the connect URL and at the callback', async () => {
    const reply = await connect('crm-late', { ttlSeconds: 2 });
    expect(reply.ok).toBe(true);
    await sleep(Math.max(0, Date.parse(reply.expiresAt) - Date.now()) + 1_000);
    await expectRefusedPage(reply.url);
    await expectNoCredential('crm-late');

    const slow = await connect('crm-slow', { ttlSeconds: 5 });
    const held = await heldCallback(slow.url);
    await sleep(Math.max(0, Date.parse(slow.expiresAt) - Date.now()) + 1_000);
    await expectRefusedPage(held);
    await expectNoCredential('crm-slow');
  }, 60_000);

  it('the link opened twice consumes nothing: the page names tenant, connection, provider and scopes, and its button then connects', async () => {
    const url = await startConnect('crm-twice', { metadata: { displayName: 'Acme Industries' } });
    const asked = oidc.authorizationRequests.length;
    for (let i = 0; i < 2; i++) {
      const tab = await browser.open(url);
      const page = await tab.result();
      await tab.page.close();
      expect(page.status).toBe(200);
      for (const shown of ['Acme Industries (acme)', 'crm-twice', 'oidc', 'openid offline_access api:read'])
        expect(page.text).toContain(shown);
    }
    // Nobody was sent to the provider by the GETs.
    expect(oidc.authorizationRequests).toHaveLength(asked);
    const { tab, end } = await consentThrough(url);
    await tab.page.close();
    plantCallback(front.callbacks.at(-1)!);
    expect(end.status).toBe(200);
    expect(end.text).toMatch(/connected/i);
    expect((await describeCredential('crm-twice')).credential.status).toBe('active');
  }, 60_000);

  it('a provider URL copied into a second browser is refused with a page that says what happened; nothing is connected', async () => {
    const url = await startConnect('crm-copied');
    const tab = await browser.open(url);
    await tab.pressConnect();
    // The first browser holds the binding: host-only, Secure, HttpOnly, Lax.
    const binding = (await tab.page.context().cookies(front.url)).filter((c) =>
      c.name.startsWith('__Host-tokenkeeper-connect-'),
    );
    expect(binding.length).toBeGreaterThanOrEqual(1);
    for (const cookie of binding)
      expect(cookie).toMatchObject({ secure: true, httpOnly: true, sameSite: 'Lax', path: '/' });
    await tab.page.close();
    // What an attacker copies: the authorization request the refresher sent this browser to.
    const asked = oidc.authorizationRequests.at(-1)!;
    const copied = `${oidc.authorizationUrl}?${new URLSearchParams(asked).toString()}`;
    planted.add(asked.get('state')!);

    const second = await BrowserHarness.launch();
    try {
      const other = await second.open(copied);
      const end = await other.loginAndConsent(LOGIN.user, LOGIN.password);
      await other.page.close();
      plantCallback(front.callbacks.at(-1)!);
      expect(new URL(front.callbacks.at(-1)!).searchParams.get('state')).toBe(asked.get('state'));
      expect(end.status).toBe(403);
      expect(end.text).toMatch(/started in another browser/i);
      expect(end.text).toMatch(/nothing was connected/);
    } finally {
      await second.close();
    }
    await expectNoCredential('crm-copied');
    expect(
      oidc.tokenRequests.filter(
        (r) => r.params.get('code') === new URL(front.callbacks.at(-1)!).searchParams.get('code'),
      ),
    ).toHaveLength(0);
    await waitFor(async () => (await auditTypes('crm-copied')).includes('connect_failed'), { timeoutMs: 20_000 });
    expect(await auditTypes('crm-copied')).not.toContain('connected');
  }, 90_000);

  it('a scope outside what the provider entry allows is refused at connect time', async () => {
    const reply = await connect('crm-wide', { scopes: ['openid', 'api:write'] });
    expect(reply.ok).toBe(false);
    expect(reply.error.code).toBe('forbidden');
    expect(reply.error.message).toMatch(/"api:write" not in allowedScopes/);
    await expectNoCredential('crm-wide');
  });

  it('no code, verifier, state or token in any log line of either replica', () => {
    expect(planted.size).toBeGreaterThanOrEqual(10);
    const logs = [replicaA.logs.text(), replicaB.logs.text()];
    // Trace level: the replicas did log the flows (a scan of nothing proves nothing).
    for (const text of logs) expect(text.length).toBeGreaterThan(0);
    expect(logs.join('\n')).toMatch(/connect/i);
    for (const value of planted) {
      for (const text of logs) expect(text.includes(value), `planted value found in a log line`).toBe(false);
    }
  });

  function refreshTokensPresented(): string[] {
    return oidc.tokenRequests
      .filter((r) => r.params.get('grant_type') === 'refresh_token')
      .map((r) => r.params.get('refresh_token')!);
  }
});

/** The `oidc` provider of the providers file, with the connect-flow fields. */
function connectProviders(idp: OidcProviderHarness, returnOrigin: string): Map<string, ProviderConfig> {
  const connectFields = {
    authorizationUrl: idp.authorizationUrl,
    issuer: idp.issuer,
    // oidc-provider grants offline_access (hence a refresh token) only with prompt=consent.
    authorizeParams: { prompt: 'consent' },
    allowedReturnOrigins: [returnOrigin],
  };
  const doc = {
    providers: {
      oidc: {
        tokenUrl: idp.tokenUrl,
        revocationUrl: idp.revocationUrl,
        clientId: idp.clientId,
        clientSecret: idp.clientSecret,
        authMethod: 'client_secret_basic',
        grant: 'refresh_token',
        scopes: ['openid', 'offline_access', 'api:read'],
        ...connectFields,
      },
    },
  };
  const providers = parseProvidersDocument(JSON.stringify(doc), 'json', {});
  // Until the loader knows the connect fields it may drop them: set them on the result too.
  for (const [id, provider] of providers) providers.set(id, { ...provider, ...connectFields });
  return providers;
}
