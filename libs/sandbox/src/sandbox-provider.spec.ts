import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '@tokenkeeper/common';
import {
  HUGE_BODY_BYTES,
  startSandboxProvider,
  type SandboxOptions,
  type SandboxProvider,
} from './sandbox-provider.js';

type ClientAuth = 'basic' | 'post' | { id: string; secret: string; method: 'basic' | 'post' };

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown>;
}

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
}

async function post(
  url: string,
  form: Record<string, string>,
  auth: ClientAuth = 'basic',
  signal?: AbortSignal,
): Promise<Answer> {
  const { id, secret, method } =
    typeof auth === 'string' ? { id: 'sandbox-client', secret: 'sandbox-secret', method: auth } : auth;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  const fields = { ...form };
  if (method === 'basic') headers.authorization = basic(id, secret);
  else Object.assign(fields, { client_id: id, client_secret: secret });
  const res = await request(url, { method: 'POST', headers, body: new URLSearchParams(fields).toString(), signal });
  const text = await res.body.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Not JSON: the fault tests look at `text`.
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

async function callApi(p: SandboxProvider, accessToken?: string): Promise<Answer> {
  const headers = accessToken ? { authorization: `Bearer ${accessToken}` } : undefined;
  const res = await request(p.apiUrl, { headers });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: JSON.parse(text) as Record<string, unknown> };
}

describe('SandboxProvider', () => {
  let provider: SandboxProvider;
  const extra: SandboxProvider[] = [];

  async function startExtra(options: SandboxOptions): Promise<SandboxProvider> {
    const p = await startSandboxProvider(options);
    extra.push(p);
    return p;
  }

  const refresh = (refreshToken: string, p = provider, auth: ClientAuth = 'basic') =>
    post(p.tokenUrl, { grant_type: 'refresh_token', refresh_token: refreshToken }, auth);

  beforeAll(async () => {
    provider = await startSandboxProvider();
  });
  afterEach(async () => {
    provider.clearFaults();
    provider.setTokenDelay(0);
    provider.setApiAlwaysUnauthorized(false);
    provider.setAccessTokenTtl(20);
    provider.resetStats();
    await Promise.all(extra.splice(0).map((p) => p.close()));
  });
  afterAll(async () => {
    await provider.close();
  });

  it('exposes its URLs', () => {
    expect(provider.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(provider.tokenUrl).toBe(`${provider.url}/oauth/token`);
    expect(provider.revocationUrl).toBe(`${provider.url}/oauth/revoke`);
    expect(provider.apiUrl).toBe(`${provider.url}/api/resource`);
  });

  describe('refresh-token rotation', () => {
    it('answers a new access and refresh token, and the access token opens the API', async () => {
      const rt1 = provider.issueRefreshToken();
      expect(rt1).toMatch(/^rt_[A-Za-z0-9_-]{20,}$/);
      const answer = await refresh(rt1);
      expect(answer.status).toBe(200);
      expect(answer.headers['cache-control']).toBe('no-store');
      expect(answer.json).toMatchObject({ token_type: 'Bearer', expires_in: 20 });
      expect(answer.json.access_token).toMatch(/^at_/);
      expect(answer.json.refresh_token).toMatch(/^rt_/);
      expect(answer.json.refresh_token).not.toBe(rt1);
      expect(answer.json).not.toHaveProperty('refresh_in');

      const api = await callApi(provider, answer.json.access_token as string);
      expect(api.status).toBe(200);
      expect(api.json).toEqual({ ok: true, subject: expect.stringMatching(/^user-\d+$/) });

      expect((await refresh(answer.json.refresh_token as string)).status).toBe(200);
      expect(provider.presentations(rt1)).toBe(1);
      expect(provider.everPresentedTwice()).toEqual([]);
      expect(provider.stats).toMatchObject({ tokenRequests: 2, refreshGrants: 2, successes: 2, reuseDetected: 0 });
    });

    it('revokes the whole family when a rotated-away token is presented again', async () => {
      const { accessToken: at0, refreshToken: rt1 } = provider.issueTokens();
      const first = await refresh(rt1);
      const at1 = first.json.access_token as string;
      const rt2 = first.json.refresh_token as string;
      expect((await callApi(provider, at1)).status).toBe(200);

      const reuse = await refresh(rt1);
      expect(reuse.status).toBe(400);
      expect(reuse.json.error).toBe('invalid_grant');
      expect(provider.stats).toMatchObject({ reuseDetected: 1, familiesRevoked: 1 });
      expect(provider.everPresentedTwice()).toEqual([rt1]);
      expect(provider.presentations(rt1)).toBe(2);

      // The legitimate successor dies with the family, and so do all its access tokens.
      expect((await refresh(rt2)).json.error).toBe('invalid_grant');
      for (const at of [at0, at1]) {
        const api = await callApi(provider, at);
        expect(api.status).toBe(401);
        expect(api.headers['www-authenticate']).toContain('error="invalid_token"');
      }
      // Other families are untouched.
      expect((await refresh(provider.issueRefreshToken())).status).toBe(200);
    });

    it('sees two concurrent presentations of one token as reuse', async () => {
      provider.setTokenDelay(50);
      const rt = provider.issueRefreshToken();
      const answers = await Promise.all([refresh(rt), refresh(rt)]);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 400]);
      expect(provider.stats.maxConcurrentTokenRequests).toBe(2);
      expect(provider.stats.reuseDetected).toBe(1);
      expect(provider.everPresentedTwice()).toContain(rt);
    });

    it('lets a rotated-away token be used again within the reuse grace, not after it', async () => {
      const p = await startExtra({ reuseGraceSeconds: 0.3 });
      const rt1 = p.issueRefreshToken();
      const rt2 = (await refresh(rt1, p)).json.refresh_token as string;
      const retry = await refresh(rt1, p);
      expect(retry.status).toBe(200);
      expect(retry.json.refresh_token).not.toBe(rt2);
      expect(p.everPresentedTwice()).toEqual([]);
      expect(p.stats.reuseDetected).toBe(0);

      await sleep(350);
      expect((await refresh(rt1, p)).json.error).toBe('invalid_grant');
      expect(p.stats).toMatchObject({ reuseDetected: 1, familiesRevoked: 1 });
      expect(p.everPresentedTwice()).toEqual([rt1]);
      expect((await refresh(rt2, p)).status).toBe(400);
    });

    it('keeps the refresh token when rotation is off, and omits it from the answer', async () => {
      const p = await startExtra({ rotateRefreshTokens: false, expiresInAsString: true, refreshInSeconds: 12 });
      const rt = p.issueRefreshToken();
      for (let i = 0; i < 3; i++) {
        const answer = await refresh(rt, p);
        expect(answer.status).toBe(200);
        expect(answer.json).not.toHaveProperty('refresh_token');
        expect(answer.json).toMatchObject({ expires_in: '20', refresh_in: 12 });
      }
      expect(p.presentations(rt)).toBe(3);
      expect(p.everPresentedTwice()).toEqual([]);
    });

    it('answers invalid_grant for an unknown refresh token and invalid_request for a missing one', async () => {
      const unknown = await refresh('rt_unknown');
      expect(unknown.status).toBe(400);
      expect(unknown.json.error).toBe('invalid_grant');
      const missing = await post(provider.tokenUrl, { grant_type: 'refresh_token' });
      expect(missing.json.error).toBe('invalid_request');
      expect(provider.stats.familiesRevoked).toBe(0);
    });
  });

  describe('client authentication and grants', () => {
    it('accepts client_secret_basic and client_secret_post', async () => {
      expect((await refresh(provider.issueRefreshToken(), provider, 'basic')).status).toBe(200);
      expect((await refresh(provider.issueRefreshToken(), provider, 'post')).status).toBe(200);
    });

    it('answers 401 invalid_client for a wrong client, by either method', async () => {
      const wrongBasic = await refresh(provider.issueRefreshToken(), provider, {
        id: 'sandbox-client',
        secret: 'nope',
        method: 'basic',
      });
      expect(wrongBasic.status).toBe(401);
      expect(wrongBasic.json.error).toBe('invalid_client');
      expect(wrongBasic.headers['www-authenticate']).toMatch(/^Basic/);
      const wrongPost = await refresh(provider.issueRefreshToken(), provider, {
        id: 'other',
        secret: 'sandbox-secret',
        method: 'post',
      });
      expect(wrongPost.status).toBe(401);
      expect(wrongPost.json.error).toBe('invalid_client');
      const none = await post(
        provider.tokenUrl,
        { grant_type: 'client_credentials', client_id: 'sandbox-client' },
        {
          id: 'sandbox-client',
          secret: '',
          method: 'post',
        },
      );
      expect(none.status).toBe(401);
      expect(provider.stats.invalidClient).toBe(3);
      expect(provider.stats.successes).toBe(0);
    });

    it('form-decodes Basic credentials (RFC 6749 §2.3.1) and also accepts them raw', async () => {
      const p = await startExtra({ clientId: 'my client', clientSecret: 'se:cr+et/' });
      const form = { grant_type: 'client_credentials' };
      const encoded = { id: 'my+client', secret: encodeURIComponent('se:cr+et/'), method: 'basic' as const };
      expect((await post(p.tokenUrl, form, encoded)).status).toBe(200);
      expect((await post(p.tokenUrl, form, { id: 'my client', secret: 'se:cr+et/', method: 'basic' })).status).toBe(
        200,
      );
      expect((await post(p.tokenUrl, form, { id: 'my client', secret: 'se:cr+et/', method: 'post' })).status).toBe(200);
    });

    it('rejects two authentication methods in one request', async () => {
      const res = await request(provider.tokenUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: basic('sandbox-client', 'sandbox-secret'),
        },
        body: 'grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret',
      });
      expect(res.statusCode).toBe(400);
      expect(await res.body.json()).toMatchObject({ error: 'invalid_request' });
    });

    it('accepts a public client only when allowed', async () => {
      const p = await startExtra({ allowPublicClient: true });
      const res = await request(p.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `grant_type=refresh_token&client_id=sandbox-client&refresh_token=${p.issueRefreshToken()}`,
      });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    });

    it('issues client_credentials tokens without a refresh token, echoing the scope', async () => {
      const answer = await post(provider.tokenUrl, { grant_type: 'client_credentials', scope: 'read write' }, 'post');
      expect(answer.status).toBe(200);
      expect(answer.json).toMatchObject({ token_type: 'Bearer', expires_in: 20, scope: 'read write' });
      expect(answer.json).not.toHaveProperty('refresh_token');
      const api = await callApi(provider, answer.json.access_token as string);
      expect(api.json).toEqual({ ok: true, subject: 'sandbox-client', scope: 'read write' });
      expect(provider.stats.clientCredentialsGrants).toBe(1);
    });

    it('answers unsupported_grant_type for other grants and refuses non-form bodies', async () => {
      const answer = await post(provider.tokenUrl, { grant_type: 'password', username: 'u', password: 'p' });
      expect(answer.status).toBe(400);
      expect(answer.json.error).toBe('unsupported_grant_type');
      const json = await request(provider.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basic('sandbox-client', 'sandbox-secret') },
        body: '{"grant_type":"client_credentials"}',
      });
      expect(json.statusCode).toBe(400);
      await json.body.dump();
    });
  });

  describe('faults', () => {
    const grant = { grant_type: 'client_credentials' };

    it('answers a given status and body', async () => {
      provider.injectFault({ type: 'status', status: 500, body: 'boom' });
      const answer = await post(provider.tokenUrl, grant);
      expect(answer).toMatchObject({ status: 500, text: 'boom' });
      expect(answer.headers['content-type']).toMatch(/^text\/plain/);
    });

    it('sends Retry-After with a rate limit, as 429 or 503', async () => {
      provider.injectFault({ type: 'rate_limit', retryAfterSeconds: 7 });
      provider.injectFault({ type: 'rate_limit', retryAfterSeconds: 3, status: 503 });
      const limited = await post(provider.tokenUrl, grant);
      expect(limited.status).toBe(429);
      expect(limited.headers['retry-after']).toBe('7');
      const unavailable = await post(provider.tokenUrl, grant);
      expect(unavailable.status).toBe(503);
      expect(unavailable.headers['retry-after']).toBe('3');
      expect(unavailable.json.error).toBe('temporarily_unavailable');
      expect((await post(provider.tokenUrl, grant)).status).toBe(200);
    });

    it('answers HTML pages with 502 and with 200', async () => {
      provider.injectFault({ type: 'html' });
      provider.injectFault({ type: 'html200' });
      const bad = await post(provider.tokenUrl, grant);
      expect(bad.status).toBe(502);
      expect(bad.headers['content-type']).toMatch(/^text\/html/);
      expect(bad.text).toContain('<html>');
      const ok = await post(provider.tokenUrl, grant);
      expect(ok.status).toBe(200);
      expect(ok.headers['content-type']).toMatch(/^text\/html/);
      expect(ok.text).toContain('<html>');
    });

    it('answers an error inside a 200, GitHub style', async () => {
      provider.injectFault({ type: 'error_in_200', error: 'bad_verification_code' });
      const answer = await post(provider.tokenUrl, grant);
      expect(answer.status).toBe(200);
      expect(answer.json.error).toBe('bad_verification_code');
      expect(answer.json).not.toHaveProperty('access_token');
    });

    it('answers OAuth errors with sensible default statuses', async () => {
      provider.injectFault({ type: 'oauth_error', error: 'invalid_grant' });
      provider.injectFault({ type: 'oauth_error', error: 'invalid_client' });
      provider.injectFault({ type: 'oauth_error', error: 'temporarily_unavailable', status: 503 });
      expect(await post(provider.tokenUrl, grant)).toMatchObject({ status: 400, json: { error: 'invalid_grant' } });
      expect(await post(provider.tokenUrl, grant)).toMatchObject({ status: 401, json: { error: 'invalid_client' } });
      expect(await post(provider.tokenUrl, grant)).toMatchObject({
        status: 503,
        json: { error: 'temporarily_unavailable' },
      });
    });

    it('answers a form-encoded body whose token is not real', async () => {
      provider.injectFault({ type: 'form_encoded' });
      const answer = await post(provider.tokenUrl, grant);
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toMatch(/^application\/x-www-form-urlencoded/);
      const token = new URLSearchParams(answer.text).get('access_token')!;
      expect((await callApi(provider, token)).status).toBe(401);
    });

    it('stalls until the client gives up, and close() does not wait for stalled requests', async () => {
      const p = await startExtra({});
      p.setFault({ type: 'stall' });
      const started = Date.now();
      await expect(post(p.tokenUrl, grant, 'basic', AbortSignal.timeout(150))).rejects.toThrow();
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      const abandoned = post(p.tokenUrl, grant).catch((error: unknown) => error);
      // Arrived and stalled (on a loaded machine the request may take a while to arrive).
      const deadline = Date.now() + 10_000;
      while (p.stats.tokenRequests < 2 && Date.now() < deadline) await sleep(10);
      expect(p.stats.tokenRequests).toBe(2);
      await p.close();
      expect(await abandoned).toBeInstanceOf(Error);
    });

    it('resets the connection', async () => {
      provider.injectFault({ type: 'reset' });
      await expect(post(provider.tokenUrl, grant)).rejects.toThrow();
      expect((await post(provider.tokenUrl, grant)).status).toBe(200);
    });

    it('sends a multi-megabyte body', async () => {
      provider.injectFault({ type: 'huge' });
      const res = await request(provider.tokenUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: basic('sandbox-client', 'sandbox-secret'),
        },
        body: 'grant_type=client_credentials',
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-length']).toBeUndefined();
      const text = await res.body.text();
      expect(text.length).toBeGreaterThan(HUGE_BODY_BYTES);
      expect(JSON.parse(text)).toHaveProperty('access_token');
    });

    it('delays, then answers normally', async () => {
      provider.injectFault({ type: 'delay', ms: 120 });
      const started = Date.now();
      expect((await post(provider.tokenUrl, grant)).status).toBe(200);
      expect(Date.now() - started).toBeGreaterThanOrEqual(110);
    });

    it('queues injected faults in order, and a persistent fault lasts until cleared', async () => {
      provider.injectFault({ type: 'status', status: 500 }, 2);
      provider.injectFault({ type: 'status', status: 502 });
      provider.setFault({ type: 'status', status: 504 });
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await post(provider.tokenUrl, grant)).status);
      expect(statuses).toEqual([500, 500, 502, 504, 504]);
      provider.setFault(null);
      expect((await post(provider.tokenUrl, grant)).status).toBe(200);
    });

    it('does not count a faulted request as a presentation of the refresh token', async () => {
      const rt = provider.issueRefreshToken();
      provider.injectFault({ type: 'status', status: 503 });
      expect((await refresh(rt)).status).toBe(503);
      expect(provider.presentations(rt)).toBe(0);
      expect((await refresh(rt)).status).toBe(200);
      expect(provider.everPresentedTwice()).toEqual([]);
    });

    it('delays every token response with setTokenDelay and counts concurrency', async () => {
      provider.setTokenDelay(60);
      const started = Date.now();
      const answers = await Promise.all([1, 2, 3].map(() => post(provider.tokenUrl, grant)));
      expect(answers.every((a) => a.status === 200)).toBe(true);
      expect(Date.now() - started).toBeGreaterThanOrEqual(55);
      expect(provider.stats.maxConcurrentTokenRequests).toBe(3);
    });
  });

  describe('protected API', () => {
    it('answers 401 with a Bearer challenge without a token, or with an unknown one', async () => {
      for (const token of [undefined, 'at_unknown']) {
        const api = await callApi(provider, token);
        expect(api.status).toBe(401);
        expect(api.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_token"/);
      }
      expect(provider.stats).toMatchObject({ apiCalls: 2, apiUnauthorized: 2 });
    });

    it('answers 401 for an expired token', async () => {
      provider.setAccessTokenTtl(0.05);
      const { accessToken, expiresIn } = provider.issueTokens();
      expect(expiresIn).toBe(0.05);
      await sleep(70);
      expect((await callApi(provider, accessToken)).status).toBe(401);
    });

    it('answers 401 for a token revoked by revokeAccessToken, and for every token when told to', async () => {
      const a = provider.issueTokens().accessToken;
      const b = provider.issueTokens().accessToken;
      provider.revokeAccessToken(a);
      expect((await callApi(provider, a)).status).toBe(401);
      expect((await callApi(provider, b)).status).toBe(200);
      provider.setApiAlwaysUnauthorized(true);
      expect((await callApi(provider, b)).status).toBe(401);
      provider.setApiAlwaysUnauthorized(false);
      expect((await callApi(provider, b)).status).toBe(200);
    });
  });

  describe('revocation endpoint (RFC 7009)', () => {
    it('revokes a refresh token with its family, an access token alone, and answers 200 for unknown tokens', async () => {
      const family = provider.issueTokens();
      const other = provider.issueTokens();
      const revokeRt = await post(provider.revocationUrl, {
        token: family.refreshToken,
        token_type_hint: 'refresh_token',
      });
      expect(revokeRt.status).toBe(200);
      expect((await refresh(family.refreshToken)).json.error).toBe('invalid_grant');
      expect((await callApi(provider, family.accessToken)).status).toBe(401);

      expect((await post(provider.revocationUrl, { token: other.accessToken }, 'post')).status).toBe(200);
      expect((await callApi(provider, other.accessToken)).status).toBe(401);
      expect((await refresh(other.refreshToken)).status).toBe(200);

      expect((await post(provider.revocationUrl, { token: 'rt_unknown' })).status).toBe(200);
      expect(provider.stats).toMatchObject({ revocations: 3, familiesRevoked: 1 });
    });

    it('requires client authentication', async () => {
      const { refreshToken } = provider.issueTokens();
      const answer = await post(
        provider.revocationUrl,
        { token: refreshToken },
        { id: 'sandbox-client', secret: 'x', method: 'post' },
      );
      expect(answer.status).toBe(401);
      expect((await refresh(refreshToken)).status).toBe(200);
    });
  });

  it('resets its stats in place', async () => {
    const stats = provider.stats;
    await post(provider.tokenUrl, { grant_type: 'client_credentials' });
    expect(stats.successes).toBe(1);
    provider.resetStats();
    expect(stats.successes).toBe(0);
    expect(provider.stats).toBe(stats);
  });
});
