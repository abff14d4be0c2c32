import { createHash, randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxAuthorizer } from './sandbox-authorize.js';
import { startSandboxProvider, type SandboxProvider } from './sandbox-provider.js';

const REDIRECT_URI = 'http://127.0.0.1:9/oauth/callback';
const BASIC = `Basic ${Buffer.from('sandbox-client:sandbox-secret').toString('base64')}`;

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeQuery(challenge: string, overrides: Record<string, string | undefined> = {}): string {
  const params: Record<string, string | undefined> = {
    response_type: 'code',
    client_id: 'sandbox-client',
    redirect_uri: REDIRECT_URI,
    scope: 'read write',
    state: 'st-123',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...overrides,
  };
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) query.set(k, v);
  return query.toString();
}

async function json(res: Awaited<ReturnType<typeof request>>): Promise<Record<string, unknown>> {
  return (await res.body.json()) as Record<string, unknown>;
}

function expectStrictPageHeaders(headers: Record<string, unknown>): void {
  expect(headers['cache-control']).toBe('no-store');
  expect(headers['referrer-policy']).toBe('no-referrer');
  expect(String(headers['content-type'])).toMatch(/^text\/html/);
  const csp = String(headers['content-security-policy']);
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toMatch(/script-src/);
  expect(headers['x-frame-options']).toBe('DENY');
}

describe('sandbox authorization endpoint (code with PKCE S256)', () => {
  let provider: SandboxProvider;

  beforeAll(async () => {
    provider = await startSandboxProvider({ issuer: true });
  });
  afterAll(async () => {
    await provider.close();
  });

  /** GET /authorize, then the consent id its form carries. */
  async function openConsent(challenge: string, overrides?: Record<string, string | undefined>): Promise<string> {
    const res = await request(`${provider.authorizationUrl}?${authorizeQuery(challenge, overrides)}`);
    const html = await res.body.text();
    expect(res.statusCode, html).toBe(200);
    return /name="consent" value="([^"]+)"/.exec(html)![1]!;
  }

  async function decide(consent: string, decision: string) {
    const res = await request(provider.authorizationUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ consent, decision }).toString(),
    });
    const text = await res.body.text();
    return {
      status: res.statusCode,
      headers: res.headers,
      text,
      location: res.headers.location ? new URL(String(res.headers.location)) : undefined,
    };
  }

  /** Consent allowed: the code the redirect carries. */
  async function codeFor(challenge: string): Promise<string> {
    const answer = await decide(await openConsent(challenge), 'allow');
    expect(answer.status).toBe(302);
    return answer.location!.searchParams.get('code')!;
  }

  function exchange(form: Record<string, string>, authorization: string | null = BASIC) {
    return request(provider.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) },
      body: new URLSearchParams({ grant_type: 'authorization_code', redirect_uri: REDIRECT_URI, ...form }).toString(),
    });
  }

  it('shows a script-free consent page, redirects Allow with code, state and iss, and exchanges the code with the verifier', async () => {
    const { verifier, challenge } = pkce();
    const page = await request(`${provider.authorizationUrl}?${authorizeQuery(challenge)}`);
    const html = await page.body.text();
    expect(page.statusCode).toBe(200);
    expectStrictPageHeaders(page.headers);
    // The redirect that answers the form goes to the client's origin, which form-action must allow.
    expect(String(page.headers['content-security-policy'])).toContain("form-action 'self' http://127.0.0.1:9;");
    expect(html).not.toMatch(/<script/i);
    expect(html).toMatch(/<form method="post" action="\/authorize">/);
    expect(html).toMatch(/value="allow">Allow</);
    expect(html).toMatch(/value="deny">Deny</);
    expect(html).toContain('<code>read</code> <code>write</code>');
    const consent = /name="consent" value="([^"]+)"/.exec(html)![1]!;

    const allowed = await decide(consent, 'allow');
    expect(allowed.status).toBe(302);
    expect(allowed.headers['cache-control']).toBe('no-store');
    const location = allowed.location!;
    expect(`${location.origin}${location.pathname}`).toBe(REDIRECT_URI);
    expect(location.searchParams.get('state')).toBe('st-123');
    expect(location.searchParams.get('iss')).toBe(provider.url);
    const code = location.searchParams.get('code')!;
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // The consent is single use.
    const again = await decide(consent, 'allow');
    expect(again.status).toBe(400);
    expect(again.location).toBeUndefined();

    const before = provider.stats.authorizationCodeGrants;
    const res = await exchange({ code, code_verifier: verifier });
    const tokens = await json(res);
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(tokens).toMatchObject({ token_type: 'Bearer', expires_in: 20, scope: 'read write' });
    expect(tokens.access_token).toMatch(/^at_/);
    expect(tokens.refresh_token).toMatch(/^rt_/);
    expect(provider.stats.authorizationCodeGrants).toBe(before + 1);

    const api = await request(provider.apiUrl, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(await json(api)).toMatchObject({ ok: true, scope: 'read write' });
    // The family rotates as any other.
    const refreshed = await request(provider.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: BASIC },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: String(tokens.refresh_token),
      }).toString(),
    });
    const rotated = await json(refreshed);
    expect(refreshed.statusCode).toBe(200);
    expect(rotated.refresh_token).not.toBe(tokens.refresh_token);
  });

  it('redirects Deny with error=access_denied, the state and iss, and no code', async () => {
    const denied = await decide(await openConsent(pkce().challenge), 'deny');
    expect(denied.status).toBe(302);
    const params = Object.fromEntries(denied.location!.searchParams);
    expect(params).toMatchObject({ error: 'access_denied', state: 'st-123', iss: provider.url });
    expect(params.code).toBeUndefined();
  });

  it('refuses a wrong verifier with invalid_grant, and the code is spent', async () => {
    const { verifier, challenge } = pkce();
    const code = await codeFor(challenge);
    const wrong = await exchange({ code, code_verifier: pkce().verifier });
    expect(wrong.statusCode).toBe(400);
    expect(await json(wrong)).toMatchObject({ error: 'invalid_grant', error_description: 'PKCE verification failed' });
    const right = await exchange({ code, code_verifier: verifier });
    expect(right.statusCode).toBe(400);
    expect((await json(right)).error).toBe('invalid_grant');
  });

  it('refuses a replayed code with invalid_grant and revokes what the first exchange gave', async () => {
    const { verifier, challenge } = pkce();
    const code = await codeFor(challenge);
    const first = await exchange({ code, code_verifier: verifier });
    const tokens = await json(first);
    expect(first.statusCode).toBe(200);
    const replay = await exchange({ code, code_verifier: verifier });
    expect(replay.statusCode).toBe(400);
    expect((await json(replay)).error).toBe('invalid_grant');
    const api = await request(provider.apiUrl, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    await api.body.dump();
    expect(api.statusCode).toBe(401);
  });

  it('refuses a redirect_uri that differs from the authorization request, or none, with invalid_grant', async () => {
    const { verifier, challenge } = pkce();
    const code = await codeFor(challenge);
    const wrong = await exchange({ code, code_verifier: verifier, redirect_uri: 'http://127.0.0.1:9/oauth/callback/' });
    expect(wrong.statusCode).toBe(400);
    expect(await json(wrong)).toMatchObject({
      error: 'invalid_grant',
      error_description: 'redirect_uri does not match the authorization request',
    });

    const other = pkce();
    const second = await codeFor(other.challenge);
    const none = await request(provider.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: BASIC },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: second,
        code_verifier: other.verifier,
      }).toString(),
    });
    expect(none.statusCode).toBe(400);
    expect((await json(none)).error).toBe('invalid_grant');
  });

  it('refuses an unknown code, and a code grant without client authentication', async () => {
    const unknown = await exchange({ code: 'A'.repeat(43), code_verifier: pkce().verifier });
    expect(unknown.statusCode).toBe(400);
    expect((await json(unknown)).error).toBe('invalid_grant');
    const { verifier, challenge } = pkce();
    const code = await codeFor(challenge);
    const anonymous = await exchange({ code, code_verifier: verifier, client_id: 'sandbox-client' }, null);
    expect(anonymous.statusCode).toBe(401);
    expect((await json(anonymous)).error).toBe('invalid_client');
  });

  it.each([
    ['an unknown client', { client_id: 'someone-else' }, /unknown client_id/],
    ['no code_challenge', { code_challenge: undefined }, /PKCE is required/],
    ['the plain method', { code_challenge_method: 'plain' }, /PKCE is required/],
    ['no redirect_uri', { redirect_uri: undefined }, /redirect_uri is required/],
    ['a javascript: redirect_uri', { redirect_uri: 'javascript:alert(1)' }, /must be http\(s\)/],
    ['response_type token', { response_type: 'token' }, /response_type must be code/],
  ])('answers %s with a plain 400 page, not a redirect', async (_name, overrides, message) => {
    const res = await request(`${provider.authorizationUrl}?${authorizeQuery(pkce().challenge, overrides)}`);
    const html = await res.body.text();
    expect(res.statusCode).toBe(400);
    expect(res.headers.location).toBeUndefined();
    expectStrictPageHeaders(res.headers);
    expect(String(res.headers['content-security-policy'])).toContain("form-action 'none'");
    expect(html).toMatch(message);
    expect(html).not.toContain('<form');
  });

  it('escapes what the request brings into the page', async () => {
    const consentHtml = await request(
      `${provider.authorizationUrl}?${authorizeQuery(pkce().challenge, { scope: '<img src=x onerror=alert(1)>' })}`,
    );
    const html = await consentHtml.body.text();
    expect(consentHtml.statusCode).toBe(200);
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img');
  });

  it('accepts only the registered redirect URIs when it has some, and a public client with client_id in the form', async () => {
    const strict = await startSandboxProvider({ redirectUris: [REDIRECT_URI], allowPublicClient: true });
    try {
      const other = await request(
        `${strict.authorizationUrl}?${authorizeQuery(pkce().challenge, { redirect_uri: 'http://127.0.0.1:9/elsewhere' })}`,
      );
      expect(await other.body.text()).toMatch(/not registered/);
      expect(other.statusCode).toBe(400);

      const { verifier, challenge } = pkce();
      const page = await request(`${strict.authorizationUrl}?${authorizeQuery(challenge, { state: undefined })}`);
      const consent = /name="consent" value="([^"]+)"/.exec(await page.body.text())![1]!;
      const allowed = await request(strict.authorizationUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ consent, decision: 'allow' }).toString(),
      });
      await allowed.body.dump();
      const location = new URL(String(allowed.headers.location));
      // No state asked, none sent back; no issuer configured, no iss.
      expect(location.searchParams.has('state')).toBe(false);
      expect(location.searchParams.has('iss')).toBe(false);
      const res = await request(strict.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          client_id: 'sandbox-client',
          code: location.searchParams.get('code')!,
          redirect_uri: REDIRECT_URI,
          code_verifier: verifier,
        }).toString(),
      });
      expect(res.statusCode).toBe(200);
      expect((await json(res)).refresh_token).toMatch(/^rt_/);
    } finally {
      await strict.close();
    }
  });
});

describe('SandboxAuthorizer code lifetime', () => {
  it('refuses a code presented after its 60 s', () => {
    let now = 1_000_000;
    const authorizer = new SandboxAuthorizer({ clientId: 'c', now: () => now });
    const { verifier, challenge } = pkce();
    let html = '';
    let location = '';
    const res = (sink: (status: number, headers: Record<string, string>, body?: string) => void) =>
      ({
        destroyed: false,
        writeHead: (status: number, headers: Record<string, string>) => ({
          end: (body?: string) => sink(status, headers, body),
        }),
      }) as unknown as ServerResponse;
    authorizer.consentPage(
      new URLSearchParams(authorizeQuery(challenge, { client_id: 'c' })),
      res((_s, _h, body) => (html = body ?? '')),
    );
    const consent = /name="consent" value="([^"]+)"/.exec(html)![1]!;
    authorizer.decide(
      new URLSearchParams({ consent, decision: 'allow' }),
      res((_s, headers) => (location = headers.location!)),
    );
    const code = new URL(location).searchParams.get('code');
    now += 60_001;
    expect(authorizer.redeem({ code, clientId: 'c', redirectUri: REDIRECT_URI, codeVerifier: verifier })).toEqual({
      ok: false,
      description: 'authorization code expired',
    });
  });
});
