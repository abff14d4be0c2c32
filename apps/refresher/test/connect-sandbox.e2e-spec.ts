/**
 * The whole connect flow (SPEC §12) against the sandbox provider's consent page, with the
 * person's browser played by plain HTTP: the refresher's link, its redirect to the sandbox's
 * /authorize, Allow (or Deny) on the consent form, the redirect to /oauth/callback, and then
 * a stored credential whose token the sandbox's API accepts and which refreshes as any
 * other. The same flow through a real browser and authorization server is
 * test/connect-oidc.e2e-spec.ts; this one is what `DEMO_CONNECT=1 npm run demo` relies on.
 */
import { createTestDatabase, freePort, startNatsServer, startSandboxProvider, waitFor, type NatsServerHandle, type SandboxProvider, type TestDatabase } from '@tokenkeeper/testing';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callApi, EventLog } from './e2e-support.js';
import { RawCaller, sandboxProviders, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

interface Step {
  status: number;
  location?: string;
  text: string;
}

async function get(url: string): Promise<Step> {
  const res = await request(url, { method: 'GET' });
  const text = await res.body.text();
  return { status: res.statusCode, location: res.headers.location === undefined ? undefined : String(res.headers.location), text };
}

async function postForm(url: string, form: Record<string, string>): Promise<Step> {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
  const text = await res.body.text();
  return { status: res.statusCode, location: res.headers.location === undefined ? undefined : String(res.headers.location), text };
}

describe('connect flow against the sandbox consent page', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let events: EventLog;
  let publicPort: number;
  const publicBase = () => `http://127.0.0.1:${publicPort}`;

  beforeAll(async () => {
    [nats, db, sandbox, publicPort] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_connect_sandbox'),
      // With an issuer, so that the callback's RFC 9207 check is part of the flow.
      startSandboxProvider({ issuer: true }),
      freePort(),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, {
        PUBLIC_HTTP_PORT: String(publicPort),
        PUBLIC_BASE_URL: publicBase(),
        LOG_LEVEL: 'info',
        // Short, so that a write blocked on purpose (the unstorable grant) fails in a second, not in 15.
        DATABASE_STATEMENT_TIMEOUT_MS: '800',
      }),
      sandboxProviders(sandbox, { authorizationUrl: sandbox.authorizationUrl, scopes: ['read'] }),
    );
    caller = await RawCaller.connect(nats.url);
    events = new EventLog(caller.nc);
  }, 60_000);

  afterAll(async () => {
    events?.close();
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  /** Link → the refresher's redirect → the sandbox's consent page → the decision: where the sandbox sends the browser. */
  async function consent(connection: string, decision: 'allow' | 'deny'): Promise<{ link: string; callback: string }> {
    const reply = await caller.admin('connect', { tenant: 'acme', connection, provider: 'sandbox' });
    expect(reply.ok, JSON.stringify(reply)).toBe(true);
    const toProvider = await get(reply.url);
    expect(toProvider.status).toBe(302);
    expect(toProvider.location!.startsWith(`${sandbox.authorizationUrl}?`)).toBe(true);
    const page = await get(toProvider.location!);
    expect(page.status, page.text).toBe(200);
    expect(page.text).toMatch(/sandbox-client<\/strong> wants to access/);
    const consentId = /name="consent" value="([^"]+)"/.exec(page.text)![1]!;
    const answered = await postForm(sandbox.authorizationUrl, { consent: consentId, decision });
    expect(answered.status).toBe(302);
    expect(answered.location!.startsWith(`${publicBase()}/oauth/callback?`)).toBe(true);
    return { link: reply.url, callback: answered.location! };
  }

  it('Allow: the callback stores the credential, token.registered goes out, and token.get serves a token the sandbox accepts', async () => {
    const { callback } = await consent('crm', 'allow');
    expect(new URL(callback).searchParams.get('iss')).toBe(sandbox.url);
    const done = await get(callback);
    expect(done.status, done.text).toBe(200);
    expect(done.text).toMatch(/Connected/);
    expect(done.text).toMatch(/sandbox is connected for acme\/crm/);

    const registered = await waitFor(() => events.of('registered', 'acme', 'crm')[0]);
    expect(registered.data).toMatchObject({ tenant: 'acme', connection: 'crm', version: 1 });
    const described = await caller.admin('describe', { tenant: 'acme', connection: 'crm' });
    expect(described.credential).toMatchObject({ provider: 'sandbox', status: 'active', hasAccessToken: true, hasRefreshToken: true, scope: 'read' });

    const got = await caller.get({ tenant: 'acme', connection: 'crm' });
    expect(got.ok).toBe(true);
    expect(got.token.version).toBe(1);
    expect(await callApi(sandbox, got.token.accessToken)).toBe(200);
    expect(sandbox.stats.authorizationCodeGrants).toBeGreaterThanOrEqual(1);

    // The grant the code gave is a refresh-token family like any other: it refreshes and rotates.
    const refreshed = await caller.admin('refresh', { tenant: 'acme', connection: 'crm' });
    expect(refreshed.ok).toBe(true);
    const after = await caller.get({ tenant: 'acme', connection: 'crm' });
    expect(after.token.version).toBe(2);
    expect(await callApi(sandbox, after.token.accessToken)).toBe(200);
    expect(sandbox.everPresentedTwice()).toEqual([]);

    // Replaying the callback exchanges nothing and changes nothing.
    const replay = await get(callback);
    expect(replay.status).toBe(409);
    expect((await caller.get({ tenant: 'acme', connection: 'crm' })).token.version).toBe(2);
    // No secret of the flow in the refresher's logs.
    const code = new URL(callback).searchParams.get('code')!;
    expect(refresher.logs.text().includes(code)).toBe(false);
    expect(refresher.logs.text().includes(got.token.accessToken)).toBe(false);
  });

  it('Deny: the callback says access was denied and no credential is stored', async () => {
    const { callback } = await consent('denied', 'deny');
    expect(new URL(callback).searchParams.get('error')).toBe('access_denied');
    const done = await get(callback);
    expect(done.status).toBe(403);
    expect(done.text).toMatch(/Access was denied/);
    const described = await caller.admin('describe', { tenant: 'acme', connection: 'denied' });
    expect(described.ok).toBe(false);
    expect(described.error.code).toBe('not_found');
    expect(events.of('registered', 'acme', 'denied')).toEqual([]);
  });

  it('a grant the database cannot store is retried, then revoked at the provider: a clear page, no credential, the session spent', async () => {
    const { callback } = await consent('unstorable', 'allow');
    const revocationsBefore = sandbox.stats.revocations;
    // Writes to credentials block (reads do not) until the refresher's statement timeout fails them.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    let done: Step;
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE credentials IN EXCLUSIVE MODE');
      done = await get(callback);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
    expect(done.status, done.text).toBe(503);
    expect(done.text).toMatch(/could not be stored/);
    // Three tries were made, then both tokens the code gave were revoked.
    expect(refresher.logs.text().match(/storing the grant failed; retrying/g)).toHaveLength(2);
    expect(sandbox.stats.revocations - revocationsBefore).toBe(2);
    const described = await caller.admin('describe', { tenant: 'acme', connection: 'unstorable' });
    expect(described.error?.code).toBe('not_found');
    expect(events.of('registered', 'acme', 'unstorable')).toEqual([]);
    // The session ended as failed: its callback cannot be replayed into a second exchange.
    expect((await get(callback)).status).toBe(409);
  });
});
