import { describe, expect, it } from 'vitest';
import { PROVIDER_PRESETS } from './provider-presets.js';
import { formEncode } from './token-endpoint.client.js';
import {
  CLIENT_ID,
  CLIENT_SECRET,
  failure,
  json,
  REFRESH,
  useTokenServer,
  type Handler,
} from '../../test/unit/token-server.fixture.js';

// RFC 6749 §5.2 classification of real HTTP answers, and secret hygiene of every failure.
const t = useTokenServer();

describe('UndiciTokenEndpoint: classification', () => {
  it.each([
    [400, { error: 'invalid_grant', error_description: 'Token expired' }, 'invalid_grant', 'invalid_grant'],
    [401, { error: 'invalid_client' }, 'misconfigured', 'invalid_client'],
    [400, { error: 'unauthorized_client' }, 'misconfigured', 'unauthorized_client'],
    [400, { error: 'unsupported_grant_type' }, 'misconfigured', 'unsupported_grant_type'],
    [400, { error: 'invalid_scope' }, 'misconfigured', 'invalid_scope'],
    [400, { error: 'invalid_request' }, 'misconfigured', 'invalid_request'],
    [400, { error: 'temporarily_unavailable' }, 'retryable', 'temporarily_unavailable'],
    [500, { error: 'server_error' }, 'retryable', 'server_error'],
    [502, { error: 'invalid_grant' }, 'retryable', 'invalid_grant'],
    [500, 'oops', 'retryable', 'http_500'],
    [408, '', 'retryable', 'http_408'],
    [401, 'Unauthorized', 'misconfigured', 'invalid_client'],
    [404, '<html>no</html>', 'misconfigured', 'http_404'],
    [200, { token_type: 'bearer' }, 'retryable', 'malformed_response'],
    [200, { access_token: '' }, 'retryable', 'malformed_response'],
    [200, '[1,2]', 'retryable', 'malformed_response'],
    [200, { access_token: 'a', error: 'server_error' }, 'retryable', 'server_error'],
  ] as const)('HTTP %i %j → %s / %s', async (status, body, kind, code) => {
    t.handler = (_req, res) => json(res, status, body);
    const f = failure(await t.refresh());
    expect(f).toMatchObject({ kind, code, httpStatus: status });
  });

  it('502 HTML page and 200 HTML page are retryable, never success', async () => {
    const html = '<!DOCTYPE html><html><body>Bad gateway</body></html>';
    expect(await t.respondWith(502, html, { 'content-type': 'text/html' })).toMatchObject({
      kind: 'retryable',
      code: 'http_502',
    });
    const f = await t.respondWith(200, html, { 'content-type': 'text/html; charset=utf-8' });
    expect(f).toMatchObject({ kind: 'retryable', code: 'malformed_response' });
    expect(f.message).toContain('HTML page');
  });

  it('a form-encoded 200 (GitHub without Accept) is not taken for success', async () => {
    const f = await t.respondWith(200, 'access_token=gho_x&scope=repo&token_type=bearer', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(f).toMatchObject({ kind: 'retryable', code: 'malformed_response' });
    expect(f.message).toContain('form-encoded');
    expect(f.message).not.toContain('gho_x');
  });

  it('429 honours Retry-After in seconds, 503 an HTTP-date, capped at 1 h', async () => {
    expect(await t.respondWith(429, '', { 'retry-after': '7' })).toMatchObject({
      kind: 'retryable',
      code: 'http_429',
      retryAfterMs: 7000,
    });
    const date = new Date(Date.now() + 30_000).toUTCString();
    const f = await t.respondWith(503, '', { 'retry-after': date });
    expect(f).toMatchObject({ kind: 'retryable', code: 'http_503' });
    expect(f.retryAfterMs).toBeGreaterThan(27_000);
    expect(f.retryAfterMs).toBeLessThanOrEqual(30_000);
    expect((await t.respondWith(429, '', { 'retry-after': '999999' })).retryAfterMs).toBe(3_600_000);
    expect((await t.respondWith(500, '', { 'retry-after': '5' })).retryAfterMs).toBeUndefined();
  });

  it('GitHub-style errors inside HTTP 200', async () => {
    const github = { errorCodes: PROVIDER_PRESETS.github.errorCodes };
    for (const [code, kind] of [
      ['bad_refresh_token', 'invalid_grant'],
      ['bad_verification_code', 'invalid_grant'],
      ['incorrect_client_credentials', 'misconfigured'],
    ] as const) {
      t.handler = (_req, res) =>
        json(res, 200, { error: code, error_description: 'The refresh token passed is incorrect or expired.' });
      const f = failure(await t.refresh(github));
      expect(f).toMatchObject({ kind, code, httpStatus: 200 });
      expect(f.message).toBe(`HTTP 200 ${code}: The refresh token passed is incorrect or expired.`);
    }
  });

  it('Slack-style ok:false inside HTTP 200', async () => {
    const slack = { errorCodes: PROVIDER_PRESETS.slack.errorCodes };
    t.handler = (_req, res) => json(res, 200, { ok: false, error: 'invalid_refresh_token' });
    expect(failure(await t.refresh(slack))).toMatchObject({ kind: 'invalid_grant', code: 'invalid_refresh_token' });
    t.handler = (_req, res) => json(res, 200, { ok: false, error: 'token_revoked' });
    expect(failure(await t.refresh(slack))).toMatchObject({ kind: 'invalid_grant', code: 'token_revoked' });
    t.handler = (_req, res) => json(res, 200, { ok: false, access_token: 'xoxb-leaked' });
    const f = failure(await t.refresh(slack));
    expect(f).toMatchObject({ kind: 'retryable', code: 'malformed_response' });
  });
});

describe('UndiciTokenEndpoint: no secret in failures', () => {
  const forbidden = [
    REFRESH,
    CLIENT_SECRET,
    formEncode(CLIENT_SECRET),
    encodeURIComponent(CLIENT_SECRET),
    'PLANTED',
    Buffer.from(`${formEncode(CLIENT_ID)}:${formEncode(CLIENT_SECRET)}`).toString('base64'),
  ];
  const echoes: Handler[] = [
    (r, res) => json(res, 400, { error: 'invalid_request', error_description: r.body }),
    (r, res) => json(res, 400, { error: r.body }),
    (r, res) =>
      json(res, 400, {
        error: 'invalid_request',
        error_description: `got ${r.form.get('refresh_token')!.slice(0, 14)}…`,
      }),
    (r, res) => json(res, 200, { error: 'invalid_client', error_description: `bad ${r.headers.authorization}` }),
    (r, res) =>
      json(res, 400, {
        error: 'invalid_grant',
        error_description: `${r.form.get('refresh_token')} / ${r.form.get('client_secret')}`,
      }),
    (r, res) => json(res, 401, { error: 'invalid_client', error_description: decodeURIComponent(r.body) }),
    (r, res) => json(res, 500, `${r.body} ${r.headers.authorization}`),
    (r, res) => json(res, 200, `${r.body}&access_token=x`),
  ];

  it.each(echoes.map((echo, i) => [i, echo] as const))('echo #%i', async (_i, echo) => {
    for (const authMethod of ['client_secret_basic', 'client_secret_post'] as const) {
      t.handler = echo;
      const f = failure(await t.refresh({ authMethod }));
      const text = `${f.message} ${f.code} ${JSON.stringify(f)}`;
      for (const secret of forbidden) expect(text).not.toContain(secret);
    }
  });
});
