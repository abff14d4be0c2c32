/**
 * The connect flow's HTTP surface without a browser (SPEC §12, docs/security.md): the
 * headers of every page, what the redirect asks the provider for, and PUBLIC_HTTP_PORT
 * keeping the pages and health/metrics apart. The whole flow against a real authorization
 * server and browser is test/connect-oidc.e2e-spec.ts.
 */
import { createHash } from 'node:crypto';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../test/connect-oidc.fixtures.js';
import { TokenCipher } from '../src/crypto/token-cipher.js';
import { verifierContext } from '../src/persistence/connect-session.repository.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

describe('connect pages over plain HTTP', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let privatePort: number;
  let publicPort: number;
  const publicBase = () => `http://127.0.0.1:${publicPort}`;
  const privateBase = () => `http://127.0.0.1:${privatePort}`;

  beforeAll(async () => {
    [nats, db, sandbox, privatePort, publicPort] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_connect_http'),
      startSandboxProvider(),
      freePort(),
      freePort(),
    ]);
    const providers = sandboxProviders(sandbox, {
      authorizationUrl: `${new URL(sandbox.tokenUrl).origin}/authorize`,
      authorizeParams: { access_type: 'offline' },
      scopes: ['read', 'write'],
    });
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
        {
          HTTP_PORT: String(privatePort),
          PUBLIC_HTTP_PORT: String(publicPort),
          PUBLIC_BASE_URL: `${publicBase()}/`,
          LOG_LEVEL: 'info',
        },
      ),
      providers,
    );
    caller = await RawCaller.connect(nats.url);
  }, 60_000);

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  const authorizeUrl = () => `${new URL(sandbox.tokenUrl).origin}/authorize`;
  const get = (url: string) => request(url, { method: 'GET' });

  it('redirects once to the provider with the exact redirect_uri, state and an S256 challenge, under strict headers', async () => {
    const reply = await caller.admin('connect', { tenant: 'acme', connection: 'http-1', provider: 'sandbox' });
    expect(reply.ok).toBe(true);
    expect(reply.url.startsWith(`${publicBase()}/connect/`)).toBe(true);

    const first = await get(reply.url);
    await first.body.dump();
    expect(first.statusCode).toBe(302);
    expectStrictHeaders(first.headers);
    const location = new URL(String(first.headers.location));
    expect(`${location.origin}${location.pathname}`).toBe(authorizeUrl());
    const params = Object.fromEntries(location.searchParams);
    expect(params).toMatchObject({
      response_type: 'code',
      client_id: 'sandbox-client',
      redirect_uri: `${publicBase()}/oauth/callback`,
      scope: 'read write',
      code_challenge_method: 'S256',
      access_type: 'offline',
    });
    expect(params.state).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const second = await get(reply.url);
    expect(second.statusCode).toBe(409);
    expectStrictHeaders(second.headers);
    expect(await second.body.text()).toMatch(/already used/i);

    // Nothing of the URL's secrets in the logs: not the session id, not the state.
    const logs = refresher.logs.text();
    expect(logs).toMatch(/connect session started/);
    expect(logs.includes(reply.url.split('/connect/')[1])).toBe(false);
    expect(logs.includes(params.state)).toBe(false);
    // The session id is stored as its hash only.
    const sessionId = reply.url.split('/connect/')[1];
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query(
      `SELECT encode(session_hash, 'hex') AS h, session_hash, verifier_enc FROM connect_sessions WHERE connection = 'http-1'`,
    );
    await client.end();
    expect(rows[0].h).toBe(createHash('sha256').update(sessionId).digest('hex'));
    // The verifier is stored sealed: the column opens with the refresher's key into the
    // verifier behind the challenge, and does not hold that verifier in the clear.
    const verifier = refresher.app
      .get(TokenCipher)
      .decrypt(rows[0].verifier_enc, verifierContext(rows[0].session_hash))
      .reveal();
    expect(createHash('sha256').update(verifier).digest('base64url')).toBe(params.code_challenge);
    expect(Buffer.from(rows[0].verifier_enc).includes(verifier)).toBe(false);
  });

  it('answers an unknown state with a plain page, and escapes nothing it was not given', async () => {
    const res = await get(`${publicBase()}/oauth/callback?state=${'A'.repeat(43)}&code=<script>`);
    expect(res.statusCode).toBe(400);
    expectStrictHeaders(res.headers);
    const body = await res.body.text();
    expect(body).not.toContain('<script>');
    expect(body).toMatch(/not valid/);
  });

  it('serves the pages on PUBLIC_HTTP_PORT only, and health and metrics on HTTP_PORT only', async () => {
    const pagePrivate = await get(`${privateBase()}/connect/${'a'.repeat(43)}`);
    await pagePrivate.body.dump();
    expect(pagePrivate.statusCode).toBe(404);
    const callbackPrivate = await get(`${privateBase()}/oauth/callback?state=x`);
    await callbackPrivate.body.dump();
    expect(callbackPrivate.statusCode).toBe(404);
    const pagePublic = await get(`${publicBase()}/connect/${'a'.repeat(43)}`);
    expect(await pagePublic.body.text()).toMatch(/not valid/);
    expect(pagePublic.statusCode).toBe(404);

    for (const path of ['/healthz', '/metrics']) {
      const onPublic = await get(`${publicBase()}${path}`);
      await onPublic.body.dump();
      expect(onPublic.statusCode).toBe(404);
      const onPrivate = await get(`${privateBase()}${path}`);
      await onPrivate.body.dump();
      expect(onPrivate.statusCode).toBe(200);
    }
  });

  it('a new session purges the ones that expired more than a day ago, whatever their state, and nothing younger', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      for (const connection of ['old-1', 'old-2', 'recent']) {
        expect((await caller.admin('connect', { tenant: 'acme', connection, provider: 'sandbox' })).ok).toBe(true);
      }
      // Two sessions a person abandoned long ago (one mid-flow), one that expired an hour ago.
      await client.query(
        `UPDATE connect_sessions SET expires_at = now() - interval '25 hours' WHERE connection IN ('old-1', 'old-2')`,
      );
      await client.query(`UPDATE connect_sessions SET status = 'completing' WHERE connection = 'old-2'`);
      await client.query(
        `UPDATE connect_sessions SET expires_at = now() - interval '1 hour' WHERE connection = 'recent'`,
      );
      expect((await caller.admin('connect', { tenant: 'acme', connection: 'trigger', provider: 'sandbox' })).ok).toBe(
        true,
      );
      await waitFor(
        async () => (await client.query(`SELECT 1 FROM connect_sessions WHERE connection LIKE 'old-%'`)).rowCount === 0,
        { message: 'old sessions purged' },
      );
      const { rows } = await client.query(
        `SELECT connection FROM connect_sessions WHERE connection IN ('recent', 'trigger') ORDER BY connection`,
      );
      expect(rows.map((r) => r.connection)).toEqual(['recent', 'trigger']);
    } finally {
      await client.end();
    }
  });

  it('refuses at connect time a provider without authorizationUrl and a returnUrl on an origin not allowed', async () => {
    const cc = await caller.admin('connect', { tenant: 'acme', connection: 'http-2', provider: 'sandbox-cc' });
    expect(cc.ok).toBe(false);
    expect(cc.error.code).toBe('bad_request');
    expect(cc.error.message).toMatch(/authorizationUrl/);
    const evil = await caller.admin('connect', {
      tenant: 'acme',
      connection: 'http-2',
      provider: 'sandbox',
      returnUrl: 'https://evil.example/x',
    });
    expect(evil.ok).toBe(false);
    expect(evil.error.code).toBe('bad_request');
    const unknownField = await caller.admin('connect', {
      tenant: 'acme',
      connection: 'http-2',
      provider: 'sandbox',
      redirectUri: 'https://evil.example/',
    });
    expect(unknownField.ok).toBe(false);
    expect(unknownField.error.code).toBe('bad_request');
  });
});

function expectStrictHeaders(headers: Record<string, unknown>): void {
  expect(headers['cache-control']).toBe('no-store');
  expect(headers['referrer-policy']).toBe('no-referrer');
  expect(String(headers['content-security-policy'])).toContain("default-src 'none'");
  expect(String(headers['content-security-policy'])).toContain("frame-ancestors 'none'");
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['x-frame-options']).toBe('DENY');
}
