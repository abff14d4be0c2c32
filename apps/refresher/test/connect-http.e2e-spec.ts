/**
 * The connect flow's HTTP surface without a browser (docs/security.md): the
 * headers of every page, the link's page and its button (a GET consumes nothing, the POST
 * must come from the page, its cookies), what the redirect asks the provider for, scopes,
 * the per-tenant cap, ids nobody minted, and PUBLIC_HTTP_PORT keeping the pages and
 * health/metrics apart. The whole flow against a real authorization
 * server and browser is test/connect-oidc.e2e-spec.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  ConnectPerson,
  createTestDatabase,
  freePort,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TokenCipher } from '../src/crypto/token-cipher.js';
import { ConnectSessionRepository, verifierContext } from '../src/persistence/connect-session.repository.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

/** CONNECT_MAX_OPEN_SESSIONS_PER_TENANT here: small, so that the cap is reached in a few requests. */
const CAP = 6;

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
      allowedScopes: ['read', 'write', 'admin'],
    });
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
        {
          HTTP_PORT: String(privatePort),
          PUBLIC_HTTP_PORT: String(publicPort),
          PUBLIC_BASE_URL: `${publicBase()}/`,
          LOG_LEVEL: 'info',
          CONNECT_MAX_OPEN_SESSIONS_PER_TENANT: String(CAP),
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
  const headersOf = async (url: string) => {
    const res = await get(url);
    await res.body.dump();
    return res.headers;
  };

  const sessionRow = async (connection: string) => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (
        await client.query(
          `SELECT status, encode(session_hash, 'hex') AS h, verifier_enc, browser_hash, metadata FROM connect_sessions WHERE connection = $1`,
          [connection],
        )
      ).rows[0];
    } finally {
      await client.end();
    }
  };

  it('the link shows what is being connected, twice, consuming nothing; the button then redirects once, under strict headers', async () => {
    const reply = await caller.admin('connect', {
      tenant: 'acme',
      connection: 'http-1',
      provider: 'sandbox',
      metadata: { displayName: 'Acme <Corp>', team: 'billing' },
    });
    expect(reply.ok, JSON.stringify(reply)).toBe(true);
    expect(reply.url.startsWith(`${publicBase()}/connect/`)).toBe(true);
    const person = new ConnectPerson();

    // A link scanner, a chat unfurler, the person: each GET only shows the page.
    for (let i = 0; i < 2; i++) {
      const page = await person.openLink(reply.url);
      expect(page.status, page.text).toBe(200);
      expect(page.text).toContain('Acme &lt;Corp&gt; (acme)');
      for (const shown of ['http-1', 'sandbox', 'read write', 'Continue to sandbox'])
        expect(page.text).toContain(shown);
      expect(page.formToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(page.status).toBe(200);
      const headers = await headersOf(reply.url);
      // The confirmation page's referrer stays on this origin (the button's POST needs a real Origin).
      expectStrictHeaders(headers, 'same-origin');
      // The form may post to this origin and be redirected to the provider's, nowhere else.
      expect(String(headers['content-security-policy'])).toContain(
        `form-action 'self' ${new URL(authorizeUrl()).origin};`,
      );
    }
    expect((await sessionRow('http-1')).status).toBe('created');
    expect((await sessionRow('http-1')).metadata).toEqual({ displayName: 'Acme <Corp>', team: 'billing' });
    // The form cookie: host-only, Secure, HttpOnly, never sent with another site's request.
    const [formCookie] = (await new ConnectPerson().openLink(reply.url)).setCookies;
    expect(formCookie).toMatch(
      /^__Host-tokenkeeper-form=[A-Za-z0-9_-]{43}; Max-Age=3600; Path=\/; Secure; HttpOnly; SameSite=Lax$/,
    );

    const page = await person.openLink(reply.url);
    const pressed = await person.press(reply.url, page.formToken);
    expect(pressed.status, pressed.text).toBe(303);
    expectStrictHeaders(pressed.headers);
    // The binding cookie: a fresh random value, host-only, Secure, HttpOnly, Lax (the provider's redirect back is a top-level GET), until the session expires.
    const binding = pressed.setCookies.find((c) => c.startsWith('__Host-tokenkeeper-connect-'))!;
    expect(binding).toMatch(
      /^__Host-tokenkeeper-connect-[A-Za-z0-9_-]{12}=[A-Za-z0-9_-]{43}; Max-Age=(8\d\d|900); Path=\/; Secure; HttpOnly; SameSite=Lax$/,
    );
    const bindingValue = /=([^;]+);/.exec(binding)![1];
    const location = new URL(pressed.location!);
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
    expect(params.state).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(params.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // Once pressed, the link is spent: its page and its button both say so.
    const second = await person.openLink(reply.url);
    expect(second.status).toBe(409);
    expect(second.text).toMatch(/already used/i);
    expect(second.formToken).toBeUndefined();
    expect((await person.press(reply.url, page.formToken)).status).toBe(409);

    // Nothing of the URL's secrets in the logs: not the session id, not the state, not the cookie.
    const logs = refresher.logs.text();
    expect(logs).toMatch(/connect session started/);
    const sessionId = reply.url.split('/connect/')[1];
    for (const secret of [sessionId, params.state, bindingValue, page.formToken!])
      expect(logs.includes(secret)).toBe(false);
    // The session id and the binding are stored as their hashes only.
    const row = await sessionRow('http-1');
    expect(row.h).toBe(createHash('sha256').update(sessionId).digest('hex'));
    expect(Buffer.from(row.browser_hash).toString('hex')).toBe(createHash('sha256').update(bindingValue).digest('hex'));
    // The verifier is stored sealed: the column opens with the refresher's key into the
    // verifier behind the challenge, and does not hold that verifier in the clear.
    const verifier = refresher.app
      .get(TokenCipher)
      .decrypt(row.verifier_enc, verifierContext(Buffer.from(row.h, 'hex')))
      .reveal();
    expect(createHash('sha256').update(verifier).digest('base64url')).toBe(params.code_challenge);
    expect(Buffer.from(row.verifier_enc).includes(verifier)).toBe(false);
  });

  it('the button refuses a POST that did not come from its page in this browser, and such a POST consumes nothing', async () => {
    const reply = await caller.admin('connect', { tenant: 'csrf', connection: 'http-csrf', provider: 'sandbox' });
    const person = new ConnectPerson();
    const { formToken } = await person.openLink(reply.url);
    const sameOrigin = { origin: publicBase(), 'sec-fetch-site': 'same-origin' };
    const forgeries: [string, ConnectPerson, string | undefined, Record<string, string>][] = [
      ['no form token', person, undefined, sameOrigin],
      ['a wrong form token', person, `${formToken!.slice(0, -2)}AA`, sameOrigin],
      [
        "another session's form token",
        person,
        (
          await person.openLink(
            (await caller.admin('connect', { tenant: 'csrf', connection: 'http-csrf-2', provider: 'sandbox' })).url,
          )
        ).formToken,
        sameOrigin,
      ],
      ['the right token from a browser without the form cookie', new ConnectPerson(), formToken, sameOrigin],
      ['another origin', person, formToken, { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }],
      ['a cross-site fetch without Origin', person, formToken, { 'sec-fetch-site': 'cross-site' }],
      ['Origin null', person, formToken, { origin: 'null' }],
    ];
    for (const [what, who, token, headers] of forgeries) {
      const answer = await who.press(reply.url, token, headers);
      expect(answer.status, what).toBe(403);
      expect(answer.text, what).toMatch(/did not come from the connection page/);
      expect(
        answer.setCookies.filter((c) => c.startsWith('__Host-tokenkeeper-connect-')),
        what,
      ).toEqual([]);
    }
    expect((await sessionRow('http-csrf')).status).toBe('created');
    // The page's own button, as a browser sends it, still works.
    const pressed = await person.press(reply.url, formToken);
    expect(pressed.status, pressed.text).toBe(303);
    expect(refresher.logs.text()).toMatch(/a POST that did not come from the connect page was refused/);
  });

  it('ids and states this deployment did not mint are turned away before any query', async () => {
    const repository = refresher.app.get(ConnectSessionRepository);
    const spies = (
      [
        'find',
        'beginRedirect',
        'takeForCallback',
        'findByState',
        'refuseOtherBrowser',
        'expireByState',
        'finish',
      ] as const
    ).map((method) => vi.spyOn(repository, method));
    try {
      const real = await caller.admin('connect', { tenant: 'forged', connection: 'http-forged', provider: 'sandbox' });
      const realId = real.url.split('/connect/')[1];
      // Well-formed but unsigned, a real id with its tag altered, the old 43-character form.
      const forged = [
        randomBytes(48).toString('base64url'),
        `${realId.slice(0, -3)}${realId.endsWith('AAA') ? 'BBB' : 'AAA'}`,
        randomBytes(32).toString('base64url'),
      ];
      for (const id of forged) {
        const page = await get(`${publicBase()}/connect/${id}`);
        expect(page.statusCode).toBe(404);
        expect(await page.body.text()).toMatch(/not valid/);
        const pressed = await new ConnectPerson().press(`${publicBase()}/connect/${id}`, 'x'.repeat(43));
        expect(pressed.status).toBe(404);
        const callback = await get(`${publicBase()}/oauth/callback?state=${id}&code=c`);
        await callback.body.dump();
        expect(callback.statusCode).toBe(400);
      }
      // A genuine session id is no state: the two are signed for different purposes.
      const crossed = await get(`${publicBase()}/oauth/callback?state=${realId}&code=c`);
      await crossed.body.dump();
      expect(crossed.statusCode).toBe(400);
      for (const spy of spies) expect(spy, spy.getMockName()).not.toHaveBeenCalled();
      // The real id does reach the database: the spies see what they are meant to see.
      expect((await get(real.url)).statusCode).toBe(200);
      expect(spies[0]).toHaveBeenCalledTimes(1);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it('asks only for scopes the provider entry allows: anything else is forbidden at connect time', async () => {
    const refused = await caller.admin('connect', {
      tenant: 'scopes',
      connection: 'http-scopes',
      provider: 'sandbox',
      scopes: ['read', 'delete'],
    });
    expect(refused.ok).toBe(false);
    expect(refused.error.code).toBe('forbidden');
    expect(refused.error.message).toMatch(/"delete" not in allowedScopes of provider "sandbox"/);
    expect(await sessionRow('http-scopes')).toBeUndefined();
    // allowedScopes lists admin besides the entry's scopes: asked for alone, it is accepted.
    const admin = await caller.admin('connect', {
      tenant: 'scopes',
      connection: 'http-scopes',
      provider: 'sandbox',
      scopes: ['admin'],
    });
    expect(admin.ok, JSON.stringify(admin)).toBe(true);
    expect(new URL(await new ConnectPerson().startAt(admin.url)).searchParams.get('scope')).toBe('admin');
  });

  it('caps the open sessions of a tenant (rate_limited, with when to retry); ended and expired ones do not count, other tenants are not affected', async () => {
    const open = [];
    for (let i = 0; i < CAP; i++) {
      const reply = await caller.admin('connect', {
        tenant: 'capped',
        connection: `c-${i}`,
        provider: 'sandbox',
        ttlSeconds: 600,
      });
      expect(reply.ok, JSON.stringify(reply)).toBe(true);
      open.push(reply.url);
    }
    const over = await caller.admin('connect', { tenant: 'capped', connection: 'one-more', provider: 'sandbox' });
    expect(over.ok).toBe(false);
    expect(over.error.code).toBe('rate_limited');
    expect(over.error.message).toMatch(/CONNECT_MAX_OPEN_SESSIONS_PER_TENANT/);
    expect(over.error.retryAfterSeconds).toBeGreaterThan(500);
    expect(over.error.retryAfterSeconds).toBeLessThanOrEqual(600);
    expect(await sessionRow('one-more')).toBeUndefined();
    expect((await caller.admin('connect', { tenant: 'other', connection: 'c-0', provider: 'sandbox' })).ok).toBe(true);
    // A session pressed and waiting for its callback still counts; one that ended does not.
    await new ConnectPerson().startAt(open[0]);
    expect(
      (await caller.admin('connect', { tenant: 'capped', connection: 'one-more', provider: 'sandbox' })).error?.code,
    ).toBe('rate_limited');
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(`UPDATE connect_sessions SET status = 'failed' WHERE tenant = 'capped' AND connection = 'c-1'`);
    await client.end();
    expect((await caller.admin('connect', { tenant: 'capped', connection: 'one-more', provider: 'sandbox' })).ok).toBe(
      true,
    );
  });

  it('refuses metadata beyond its bounds', async () => {
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    const big = {
      displayName: 'x'.repeat(1_000),
      a: 'x'.repeat(1_000),
      b: 'x'.repeat(1_000),
      c: 'x'.repeat(1_000),
      d: 'x'.repeat(200),
    };
    for (const metadata of [many, big, { 'bad key': 'v' }, { displayName: 7 }]) {
      const reply = await caller.admin('connect', {
        tenant: 'acme',
        connection: 'http-meta',
        provider: 'sandbox',
        metadata,
      });
      expect(reply.ok).toBe(false);
      expect(reply.error.code).toBe('bad_request');
    }
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
    const pagePrivate = await get(`${privateBase()}/connect/${'a'.repeat(64)}`);
    await pagePrivate.body.dump();
    expect(pagePrivate.statusCode).toBe(404);
    const callbackPrivate = await get(`${privateBase()}/oauth/callback?state=x`);
    await callbackPrivate.body.dump();
    expect(callbackPrivate.statusCode).toBe(404);
    const pagePublic = await get(`${publicBase()}/connect/${'a'.repeat(64)}`);
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
        expect((await caller.admin('connect', { tenant: 'purge', connection, provider: 'sandbox' })).ok).toBe(true);
      }
      // Two sessions a person abandoned long ago (one mid-flow), one that expired an hour ago.
      await client.query(
        `UPDATE connect_sessions SET expires_at = now() - interval '25 hours' WHERE connection IN ('old-1', 'old-2')`,
      );
      await client.query(`UPDATE connect_sessions SET status = 'completing' WHERE connection = 'old-2'`);
      await client.query(
        `UPDATE connect_sessions SET expires_at = now() - interval '1 hour' WHERE connection = 'recent'`,
      );
      expect((await caller.admin('connect', { tenant: 'purge', connection: 'trigger', provider: 'sandbox' })).ok).toBe(
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

function expectStrictHeaders(headers: Record<string, unknown>, referrerPolicy = 'no-referrer'): void {
  expect(headers['cache-control']).toBe('no-store');
  expect(headers['referrer-policy']).toBe(referrerPolicy);
  expect(String(headers['content-security-policy'])).toContain("default-src 'none'");
  expect(String(headers['content-security-policy'])).toContain("frame-ancestors 'none'");
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['x-frame-options']).toBe('DENY');
}
