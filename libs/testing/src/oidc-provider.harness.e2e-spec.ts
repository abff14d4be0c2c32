import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrowserHarness } from './browser.harness.js';
import { OidcProviderHarness } from './oidc-provider.harness.js';

/**
 * The harnesses together, without Tokenkeeper: a browser drives a plain authorization-code
 * flow with PKCE against oidc-provider, a loopback callback receives the code, the test
 * exchanges it, the resource server accepts the access token, and a refresh rotates the
 * refresh token (the old one is then refused).
 */
describe('OidcProviderHarness + BrowserHarness', () => {
  let callback: Server;
  let redirectUri: string;
  let oidc: OidcProviderHarness;
  let browser: BrowserHarness;

  beforeAll(async () => {
    // The client's callback: shows a fixed page; the code is read from the browser's URL.
    callback = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'text/plain' }).end('callback reached'),
    );
    await new Promise<void>((resolve) => callback.listen(0, '127.0.0.1', () => resolve()));
    redirectUri = `http://127.0.0.1:${(callback.address() as AddressInfo).port}/cb`;
    oidc = await OidcProviderHarness.start({ redirectUris: [redirectUri] });
    browser = await BrowserHarness.launch();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await oidc?.close();
    await new Promise<void>((resolve) => (callback ? callback.close(() => resolve()) : resolve()));
  });

  function authorizeUrl(state: string, verifier: string, withPkce = true): string {
    const url = new URL(oidc.authorizationUrl);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: oidc.clientId,
      redirect_uri: redirectUri,
      scope: 'openid api:read',
      state,
      ...(withPkce
        ? { code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256' }
        : {}),
    }).toString();
    return url.toString();
  }

  it('code + PKCE through the browser, introspection, and refresh-token rotation', async () => {
    const state = randomBytes(16).toString('base64url');
    const verifier = randomBytes(32).toString('base64url');
    const tab = await browser.open(authorizeUrl(state, verifier));
    const end = await tab.loginAndConsent('alice', 'wonderland');
    await tab.page.close();

    const back = new URL(end.url);
    expect(`${back.origin}${back.pathname}`).toBe(redirectUri);
    expect(end.text).toContain('callback reached');
    expect(back.searchParams.get('state')).toBe(state);
    expect(back.searchParams.get('iss')).toBe(oidc.issuer); // RFC 9207
    const code = back.searchParams.get('code')!;
    expect(code).toBeTruthy();

    const exchanged = await oidc.exchangeCode(code, verifier, redirectUri);
    expect(exchanged.status).toBe(200);
    const { access_token: accessToken, refresh_token: refreshToken } = exchanged.body;
    expect(accessToken).toEqual(expect.any(String));
    expect(refreshToken).toEqual(expect.any(String));

    expect((await oidc.introspect(accessToken)).active).toBe(true);
    const resource = await oidc.callResource(accessToken);
    expect(resource.status).toBe(200);
    expect(resource.body.sub).toBe('alice');
    expect((await oidc.callResource('not-a-token')).status).toBe(401);

    const refreshed = await oidc.refresh(refreshToken);
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.refresh_token).toEqual(expect.any(String));
    expect(refreshed.body.refresh_token).not.toBe(refreshToken);
    expect((await oidc.callResource(refreshed.body.access_token)).status).toBe(200);
    // Rotation: the old refresh token is refused now.
    const reused = await oidc.refresh(refreshToken);
    expect(reused.status).toBe(400);
    expect(reused.body.error).toBe('invalid_grant');

    // A code is single use; its reuse also revokes what it gave (oidc-provider, RFC 6749 §4.1.2).
    expect((await oidc.exchangeCode(code, verifier, redirectUri)).body.error).toBe('invalid_grant');
    expect((await oidc.callResource(refreshed.body.access_token)).status).toBe(401);
  }, 60_000);

  it('a wrong verifier, or no PKCE at all, is refused', async () => {
    const tab = await browser.open(authorizeUrl('s1', 'v'.repeat(43)));
    const end = await tab.loginAndConsent('alice', 'wonderland');
    await tab.page.close();
    const code = new URL(end.url).searchParams.get('code')!;
    expect((await oidc.exchangeCode(code, 'w'.repeat(43), redirectUri)).body.error).toBe('invalid_grant');

    const noPkce = await browser.open(authorizeUrl('s2', '', false));
    const refused = new URL(noPkce.page.url());
    await noPkce.page.close();
    expect(refused.searchParams.get('error')).toBe('invalid_request');
  }, 60_000);

  it('a refused consent comes back as access_denied', async () => {
    // A fresh browser: no provider session, so login is asked again.
    const other = await BrowserHarness.launch();
    try {
      const tab = await other.open(authorizeUrl('s3', 'x'.repeat(43)));
      await tab.login('alice', 'wonderland');
      const end = await tab.deny();
      const back = new URL(end.url);
      expect(back.searchParams.get('error')).toBe('access_denied');
      expect(back.searchParams.get('state')).toBe('s3');
      expect(back.searchParams.get('code')).toBeNull();
    } finally {
      await other.close();
    }
  }, 60_000);

  it('a wrong password does not sign in', async () => {
    const other = await BrowserHarness.launch();
    try {
      const tab = await other.open(authorizeUrl('s4', 'y'.repeat(43)));
      const end = await tab.login('alice', 'not-her-password');
      expect(end.status).toBe(401);
      expect(end.text).toContain('wrong login or password');
    } finally {
      await other.close();
    }
  }, 60_000);
});
