/**
 * The whole connect flow against the sandbox provider's consent page, with the
 * person's browser played by plain HTTP: the refresher's link, its page's button and the
 * redirect to the sandbox's /authorize, Allow (or Deny) on the consent form, the redirect to /oauth/callback, and then
 * a stored credential whose token the sandbox's API accepts and which refreshes as any
 * other. The same flow through a real browser and authorization server is
 * test/connect-oidc.e2e-spec.ts; this one is what `DEMO_CONNECT=1 npm run demo` relies on.
 */
import {
  ConnectPerson,
  type PersonStep,
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callApi, EventLog } from './e2e-support.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

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
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
        {
          PUBLIC_HTTP_PORT: String(publicPort),
          PUBLIC_BASE_URL: publicBase(),
          LOG_LEVEL: 'info',
          // Short, so that a write blocked on purpose (the unstorable grant) fails in a second, not in 15.
          DATABASE_STATEMENT_TIMEOUT_MS: '800',
        },
      ),
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

  /**
   * Link → its page → the button → the sandbox's consent page → the decision: where the
   * sandbox sends the browser, and the browser (which holds the binding cookie).
   */
  async function consent(
    connection: string,
    decision: 'allow' | 'deny',
  ): Promise<{ link: string; callback: string; person: ConnectPerson }> {
    const reply = await caller.admin('connect', { tenant: 'acme', connection, provider: 'sandbox' });
    expect(reply.ok, JSON.stringify(reply)).toBe(true);
    const person = new ConnectPerson();
    const toProvider = await person.startAt(reply.url);
    expect(toProvider.startsWith(`${sandbox.authorizationUrl}?`)).toBe(true);
    const page = await person.get(toProvider);
    expect(page.status, page.text).toBe(200);
    expect(page.text).toMatch(/sandbox-client<\/strong> wants to access/);
    const consentId = /name="consent" value="([^"]+)"/.exec(page.text)![1]!;
    const answered = await person.postForm(sandbox.authorizationUrl, { consent: consentId, decision });
    expect(answered.status).toBe(302);
    expect(answered.location!.startsWith(`${publicBase()}/oauth/callback?`)).toBe(true);
    return { link: reply.url, callback: answered.location!, person };
  }

  it('Allow: the callback stores the credential, token.registered goes out, and token.get serves a token the sandbox accepts', async () => {
    const { callback, person } = await consent('crm', 'allow');
    expect(new URL(callback).searchParams.get('iss')).toBe(sandbox.url);
    const done = await person.get(callback);
    expect(done.status, done.text).toBe(200);
    expect(done.text).toMatch(/Connected/);
    expect(done.text).toMatch(/sandbox is connected for acme\/crm/);

    const registered = await waitFor(() => events.of('registered', 'acme', 'crm')[0]);
    expect(registered.data).toMatchObject({ tenant: 'acme', connection: 'crm', version: 1 });
    const described = await caller.admin('describe', { tenant: 'acme', connection: 'crm' });
    expect(described.credential).toMatchObject({
      provider: 'sandbox',
      status: 'active',
      hasAccessToken: true,
      hasRefreshToken: true,
      scope: 'read',
    });

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
    const replay = await person.get(callback);
    expect(replay.status).toBe(409);
    expect((await caller.get({ tenant: 'acme', connection: 'crm' })).token.version).toBe(2);
    // No secret of the flow in the refresher's logs.
    const code = new URL(callback).searchParams.get('code')!;
    expect(refresher.logs.text().includes(code)).toBe(false);
    expect(refresher.logs.text().includes(got.token.accessToken)).toBe(false);
  });

  it('Deny: the callback says access was denied and no credential is stored', async () => {
    const { callback, person } = await consent('denied', 'deny');
    expect(new URL(callback).searchParams.get('error')).toBe('access_denied');
    const done = await person.get(callback);
    expect(done.status).toBe(403);
    expect(done.text).toMatch(/Access was denied/);
    const described = await caller.admin('describe', { tenant: 'acme', connection: 'denied' });
    expect(described.ok).toBe(false);
    expect(described.error.code).toBe('not_found');
    expect(events.of('registered', 'acme', 'denied')).toEqual([]);
  });

  it('a grant the database cannot store is retried, then revoked at the provider: a clear page, no credential, the session spent', async () => {
    const { callback, person } = await consent('unstorable', 'allow');
    const revocationsBefore = sandbox.stats.revocations;
    // Writes to credentials block (reads do not) until the refresher's statement timeout fails them.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    let done: PersonStep;
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE credentials IN EXCLUSIVE MODE');
      done = await person.get(callback);
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
    expect((await person.get(callback)).status).toBe(409);
  });

  it.each([
    ['without the cookie', 'elsewhere-1', (_name: string) => new ConnectPerson()],
    [
      'with another value in that cookie',
      'elsewhere-2',
      (name: string) => new ConnectPerson().withCookie(name, 'A'.repeat(43)),
    ],
  ] as const)(
    'an answer brought by another browser (%s) is refused with a page that says so: no exchange, a record, and the state is spent',
    async (_case, connection, otherBrowser) => {
      const exchangesBefore = sandbox.stats.authorizationCodeGrants;
      const { callback, person } = await consent(connection, 'allow');
      const [binding] = [...person.cookies].filter(([name]) => name.startsWith('__Host-tokenkeeper-connect-'));
      expect(binding).toBeDefined();

      const stranger = await otherBrowser(binding[0]).get(callback);
      expect(stranger.status, stranger.text).toBe(403);
      expect(stranger.text).toMatch(/Started in another browser/);
      expect(stranger.text).toMatch(
        /started in another browser, so its answer was not accepted here and nothing was connected/,
      );

      expect(sandbox.stats.authorizationCodeGrants).toBe(exchangesBefore);
      expect((await caller.admin('describe', { tenant: 'acme', connection })).error?.code).toBe('not_found');
      expect(events.of('registered', 'acme', connection)).toEqual([]);
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      const { rows } = await client.query(`SELECT type, payload FROM outbox WHERE connection = $1 ORDER BY id`, [
        connection,
      ]);
      await client.end();
      expect(rows.map((r) => `${r.type}:${r.payload.code ?? ''}`)).toEqual([
        'connect_started:',
        'connect_failed:browser_mismatch',
      ]);
      // The browser that started it comes too late: the state was spent by the refusal.
      expect((await person.get(callback)).status).toBe(409);
      expect(sandbox.stats.authorizationCodeGrants).toBe(exchangesBefore);
      // No secret of the flow in the logs, and the refusal is there by its code.
      expect(refresher.logs.text()).toMatch(/browser_mismatch/);
      for (const secret of [
        binding[1],
        new URL(callback).searchParams.get('code')!,
        new URL(callback).searchParams.get('state')!,
      ]) {
        expect(refresher.logs.text().includes(secret)).toBe(false);
      }
    },
  );

  it('a scope outside what the provider entry allows is refused at connect time', async () => {
    const reply = await caller.admin('connect', {
      tenant: 'acme',
      connection: 'wider',
      provider: 'sandbox',
      scopes: ['read', 'write'],
    });
    expect(reply.ok).toBe(false);
    expect(reply.error).toMatchObject({
      code: 'forbidden',
      message: expect.stringMatching(/"write" not in allowedScopes/),
    });
  });
});
