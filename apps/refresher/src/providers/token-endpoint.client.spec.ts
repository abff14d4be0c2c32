import { describe, expect, it } from 'vitest';
import { Secret } from '@tokenkeeper/common';
import { PROVIDER_PRESETS } from './provider-presets.js';
import { formEncode, UndiciTokenEndpoint } from './token-endpoint.client.js';
import {
  CLIENT_ID,
  CLIENT_SECRET,
  failure,
  json,
  REFRESH,
  useTokenServer,
} from '../../test/unit/token-server.fixture.js';

// Success, request shape, transport and revocation; classification is in token-endpoint.classification.spec.ts.
const t = useTokenServer();

describe('UndiciTokenEndpoint: success', () => {
  it('returns the token, normalizes Bearer, counts from requestedAt sent before the answer', async () => {
    const before = Date.now();
    const result = await t.refresh();
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.token.accessToken.reveal()).toBe('at-1');
    expect(result.token.tokenType).toBe('Bearer');
    expect(result.token.expiresInSeconds).toBe(3600);
    expect(result.token.refreshToken).toBeUndefined();
    expect(result.token.requestedAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(result.token.requestedAt.getTime()).toBeLessThanOrEqual(t.received[0]!.at);
  });

  it('reads requestedAt from the injected clock', async () => {
    const fixed = Date.parse('2031-05-06T07:08:09.000Z');
    const clocked = new UndiciTokenEndpoint({ timeoutMs: 2_000, now: () => fixed });
    try {
      const result = await t.refresh({}, clocked);
      if (!result.ok) throw new Error(result.failure.message);
      expect(result.token.requestedAt.getTime()).toBe(fixed);
    } finally {
      await clocked.close();
    }
  });

  it('accepts expires_in as a numeric string, honours refresh_in, keeps rotation and scope', async () => {
    t.handler = (_req, res) =>
      json(res, 200, {
        access_token: 'a',
        refresh_token: 'new-rt',
        expires_in: '7200',
        refresh_in: 600,
        scope: 'read write',
      });
    const result = await t.refresh();
    if (!result.ok) throw new Error(result.failure.message);
    expect(result.token.expiresInSeconds).toBe(7200);
    expect(result.token.refreshInSeconds).toBe(600);
    expect(result.token.refreshToken?.reveal()).toBe('new-rt');
    expect(result.token.scope).toBe('read write');
    expect(result.token.tokenType).toBe('Bearer');
  });

  it('treats an empty refresh_token as absent and ignores a non-numeric expires_in', async () => {
    t.handler = (_req, res) =>
      json(res, 200, { access_token: 'a', refresh_token: '', expires_in: 'soon', token_type: 'mac' });
    const result = await t.refresh();
    if (!result.ok) throw new Error(result.failure.message);
    expect(result.token.refreshToken).toBeUndefined();
    expect(result.token.expiresInSeconds).toBeUndefined();
    expect(result.token.tokenType).toBe('mac');
  });

  it('reports the preset token type (Slack answers "bot")', async () => {
    t.handler = (_req, res) => json(res, 200, { ok: true, access_token: 'xoxb', token_type: 'bot', expires_in: 43200 });
    const result = await t.refresh({ tokenType: PROVIDER_PRESETS.slack.tokenType });
    expect(result.ok && result.token.tokenType).toBe('Bearer');
  });
});

describe('UndiciTokenEndpoint: what is sent', () => {
  it('client_secret_basic: form-urlencoded id and secret in Basic, none in the body', async () => {
    await t.refresh();
    const r = t.received[0]!;
    expect(r.method).toBe('POST');
    expect(r.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(r.headers.accept).toBe('application/json');
    expect(r.headers['user-agent']).toBe('tk-test');
    const decoded = Buffer.from(r.headers.authorization!.replace(/^Basic /, ''), 'base64').toString();
    expect(decoded).toBe(`${formEncode(CLIENT_ID)}:${formEncode(CLIENT_SECRET)}`);
    expect(decoded).toContain('cs+PLANTED%2Fsecret%7E%21%26%3D%2Bvalue');
    expect(r.form.get('grant_type')).toBe('refresh_token');
    expect(r.form.get('refresh_token')).toBe(REFRESH);
    expect(r.form.has('client_id')).toBe(false);
    expect(r.form.has('client_secret')).toBe(false);
    expect(r.form.has('scope')).toBe(false);
  });

  it('client_secret_post: credentials in the body, no Authorization header', async () => {
    await t.refresh({ authMethod: 'client_secret_post' });
    const r = t.received[0]!;
    expect(r.headers.authorization).toBeUndefined();
    expect(r.form.get('client_id')).toBe(CLIENT_ID);
    expect(r.form.get('client_secret')).toBe(CLIENT_SECRET);
  });

  it('none: only client_id in the body', async () => {
    await t.refresh({ authMethod: 'none', clientSecret: undefined });
    const r = t.received[0]!;
    expect(r.headers.authorization).toBeUndefined();
    expect(r.form.get('client_id')).toBe(CLIENT_ID);
    expect(r.form.has('client_secret')).toBe(false);
  });

  it('client_credentials with scopes and extraParams; extraParams cannot override the grant', async () => {
    await t.endpoint.requestToken({
      provider: t.provider({
        grant: 'client_credentials',
        scopes: ['read:a', 'write:b'],
        extraParams: { audience: 'https://api.example.com', grant_type: 'password' },
      }),
    });
    const r = t.received[0]!;
    expect(r.form.get('grant_type')).toBe('client_credentials');
    expect(r.form.get('scope')).toBe('read:a write:b');
    expect(r.form.get('audience')).toBe('https://api.example.com');
    expect(r.form.has('refresh_token')).toBe(false);
  });

  it('refuses the refresh_token grant without a refresh token, without a request', async () => {
    const f = failure(await t.endpoint.requestToken({ provider: t.provider() }));
    expect(f).toMatchObject({ kind: 'invalid_grant', code: 'missing_refresh_token' });
    expect(t.received).toHaveLength(0);
  });
});

describe('UndiciTokenEndpoint: transport', () => {
  it('a stalled t.endpoint times out within timeoutMs', async () => {
    const quick = new UndiciTokenEndpoint({ timeoutMs: 250 });
    t.handler = () => {};
    const started = Date.now();
    const f = failure(await t.refresh({}, quick));
    const elapsed = Date.now() - started;
    expect(f).toMatchObject({ kind: 'retryable', code: 'timeout' });
    expect(elapsed).toBeGreaterThanOrEqual(240);
    expect(elapsed).toBeLessThan(600);
    await quick.close();
  });

  it('a body that stalls after the headers also times out', async () => {
    const quick = new UndiciTokenEndpoint({ timeoutMs: 250 });
    t.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"access_token":');
    };
    const f = failure(await t.refresh({}, quick));
    expect(f).toMatchObject({ kind: 'retryable', code: 'timeout' });
    await quick.close();
  });

  it('the caller signal aborts the request', async () => {
    t.handler = () => {};
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    const result = await t.endpoint.requestToken({
      provider: t.provider(),
      refreshToken: new Secret(REFRESH),
      signal: controller.signal,
    });
    expect(failure(result)).toMatchObject({ kind: 'retryable', code: 'aborted' });
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('a reset socket is a retryable network error', async () => {
    t.handler = (req, res) => res.socket?.destroy();
    expect(failure(await t.refresh())).toMatchObject({ kind: 'retryable', code: 'network' });
  });

  it('a refused connection is a retryable network error', async () => {
    const f = failure(await t.refresh({ tokenUrl: 'http://127.0.0.1:1/token' }));
    expect(f).toMatchObject({ kind: 'retryable', code: 'network' });
  });

  it('oversized bodies are cut off, declared or chunked', async () => {
    const small = new UndiciTokenEndpoint({ maxResponseBytes: 1024 });
    const big = JSON.stringify({ access_token: 'a', padding: 'x'.repeat(4096) });
    t.handler = (_req, res) => json(res, 200, big, { 'content-length': String(big.length) });
    expect(failure(await t.refresh({}, small))).toMatchObject({ kind: 'retryable', code: 'response_too_large' });
    t.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      for (let i = 0; i < 8; i++) res.write('x'.repeat(512));
      res.end();
    };
    expect(failure(await t.refresh({}, small))).toMatchObject({ kind: 'retryable', code: 'response_too_large' });
    t.handler = (_req, res) => json(res, 200, { access_token: 'ok' });
    expect((await t.refresh({}, small)).ok).toBe(true);
    await small.close();
  });
});

describe('UndiciTokenEndpoint.revoke', () => {
  it('posts token and token_type_hint with client auth (RFC 7009)', async () => {
    t.handler = (_req, res) => {
      res.writeHead(200);
      res.end();
    };
    await t.endpoint.revoke(
      t.provider({ revocationUrl: `${t.base}/revoke`, authMethod: 'client_secret_post' }),
      new Secret(REFRESH),
      'refresh_token',
    );
    const r = t.received[0]!;
    expect(r.url).toBe('/revoke');
    expect(r.form.get('token')).toBe(REFRESH);
    expect(r.form.get('token_type_hint')).toBe('refresh_token');
    expect(r.form.get('client_secret')).toBe(CLIENT_SECRET);
  });

  it('is a no-op without a revocation URL', async () => {
    await t.endpoint.revoke(t.provider(), new Secret(REFRESH), 'access_token');
    expect(t.received).toHaveLength(0);
  });

  it('throws a safe error when the provider refuses', async () => {
    t.handler = (r, res) => json(res, 400, { error: 'unsupported_token_type', error_description: r.body });
    const error = await t.endpoint
      .revoke(t.provider({ revocationUrl: `${t.base}/revoke?x=1` }), new Secret(REFRESH), 'refresh_token')
      .catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe(
      `token revocation at ${t.base}/revoke failed: HTTP 400 unsupported_token_type`,
    );
    t.handler = () => {};
    const quick = new UndiciTokenEndpoint({ timeoutMs: 100 });
    await expect(
      quick.revoke(t.provider({ revocationUrl: `${t.base}/revoke` }), new Secret(REFRESH), 'access_token'),
    ).rejects.toThrow(/failed: no complete answer within 100 ms/);
    await quick.close();
  });
});
