/**
 * Shared providers end to end: providers are global, and a tenant admin may register or
 * connect any connection of its own tenant. Without `tenants`, a tenant admin of `evil` could
 * register the operator's client_credentials provider and have the refresher mint the
 * operator's service token into evil's namespace. The real refresher runs on a real
 * nats-server under the permissions `tokenctl authz` generates; the sandbox provider is the
 * token endpoint whose requests are counted.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { TokenClient } from '@tokenkeeper/client';
import type { AuthzRole } from '@tokenkeeper/contracts';
import { adminSubject, encodeJson, tokenGetSubject } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectPerson, freePort } from '@tokenkeeper/testing';
import { startTestRefresher, testEnv, testKeys, type TestRefresher } from '../apps/refresher/test/refresher.harness.js';
import type { ProviderConfig } from '../apps/refresher/src/providers/provider.types.js';
import { parseProvidersDocument } from '../apps/refresher/src/providers/providers-file.loader.js';
import { buildAuthz } from '../apps/tokenctl/src/authz.command.js';
import type { GeneratedUser } from '../apps/tokenctl/src/authz.render.js';
import { credentialsOf, natsEnvOf } from '../apps/tokenctl/test/generated-users.js';

describe('shared providers: which tenants may use a provider', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher | undefined;
  let users: GeneratedUser[];
  let env: Record<string, string>;
  const connections: NatsConnection[] = [];
  let client: TokenClient | undefined;
  /** The sandbox's redirect back to the refresher for billing/crm, consented to before the providers file changed. */
  let pendingCallback: string | undefined;

  const userFor = (kind: AuthzRole['kind'], tenant?: string): GeneratedUser => {
    const found = users.find(
      (u) =>
        u.user.role.kind === kind &&
        (tenant === undefined || ('tenant' in u.user.role && u.user.role.tenant === tenant)),
    );
    if (!found) throw new Error(`no generated ${kind} user${tenant ? ` of ${tenant}` : ''}`);
    return found;
  };
  const connectAs = async (kind: AuthzRole['kind'], tenant?: string): Promise<NatsConnection> => {
    const user = userFor(kind, tenant);
    const nc = await connect({
      servers: nats.url,
      ...credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      noAsyncTraces: true,
    });
    connections.push(nc);
    return nc;
  };
  const call = async (nc: NatsConnection, subject: string, body: unknown = {}): Promise<any> =>
    (await nc.request(subject, encodeJson(body), { timeout: 10_000 })).json();

  const person = new ConnectPerson();
  const get = async (url: string, form?: Record<string, string>) => {
    const res = await request(
      url,
      form
        ? {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams(form).toString(),
          }
        : { method: 'GET' },
    );
    return {
      status: res.statusCode,
      location: res.headers.location === undefined ? undefined : String(res.headers.location),
      text: await res.body.text(),
    };
  };

  /**
   * The operator's own service identity at the sandbox (a client_credentials provider) and a
   * connectable one, both open to `allowed`; and a client_credentials entry without `tenants`.
   */
  const providers = (allowed: string[]): Map<string, ProviderConfig> => {
    const cc = { revocationUrl: undefined, authMethod: 'client_secret_post', grant: 'client_credentials' };
    const doc = {
      providers: {
        'internal-idp': sandbox.providerSettings({ ...cc, tenants: allowed }),
        // What every client_credentials entry looked like before `tenants` existed.
        'shared-idp': sandbox.providerSettings(cc),
        sandbox: sandbox.providerSettings({ authorizationUrl: sandbox.authorizationUrl, tenants: allowed }),
      },
    };
    return parseProvidersDocument(JSON.stringify(doc), 'json', {});
  };

  beforeAll(async () => {
    const generated = buildAuthz({ refresher: true, tenant: ['evil', 'billing'] });
    users = generated.users;
    let publicPort: number;
    [nats, db, sandbox, publicPort] = await Promise.all([
      startNatsServer({ jetstream: true, config: generated.config }),
      createTestDatabase('tk_shared_providers'),
      // Short tokens: the credential of the last case comes due within seconds.
      startSandboxProvider({ accessTokenTtlSeconds: 4 }),
      freePort(),
    ]);
    env = testEnv(
      { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
      {
        ...natsEnvOf(userFor('refresher')),
        PUBLIC_HTTP_PORT: String(publicPort),
        PUBLIC_BASE_URL: `http://127.0.0.1:${publicPort}`,
      },
    );
    refresher = await startTestRefresher(env, providers(['billing']));
  }, 120_000);

  afterAll(async () => {
    await client?.close().catch(() => undefined);
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it("a tenant admin of evil cannot register the operator's client_credentials provider: forbidden, naming `tenants`, and no token is requested", async () => {
    const evil = await connectAs('tenant-admin', 'evil');
    const unlisted = await call(evil, adminSubject('register', 'evil', 'x'), { provider: 'shared-idp' });
    expect(unlisted).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(unlisted.error.message).toMatch(/client_credentials/);
    expect(unlisted.error.message).toMatch(/`tenants` of provider "shared-idp"/);

    const listedForOthers = await call(evil, adminSubject('register', 'evil', 'y'), { provider: 'internal-idp' });
    expect(listedForOthers).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(listedForOthers.error.message).toMatch(/`tenants` of provider "internal-idp"/);
    // Who may use it is not evil's business.
    expect(listedForOthers.error.message).not.toContain('billing');

    // Nothing was stored, so nothing comes due: give the scheduler (50 ms ticks) time to prove it.
    await sleep(1_500);
    expect(await call(evil, adminSubject('describe', 'evil', 'x'))).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    expect(await call(evil, adminSubject('describe', 'evil', 'y'))).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    expect(sandbox.stats.clientCredentialsGrants).toBe(0);
  }, 60_000);

  it('a tenant named in `tenants` registers it and its consumer gets the token (positive control)', async () => {
    const admin = await connectAs('tenant-admin', 'billing');
    const registered = await call(admin, adminSubject('register', 'billing', 'svc'), { provider: 'internal-idp' });
    expect(registered).toMatchObject({
      ok: true,
      credential: { tenant: 'billing', connection: 'svc', provider: 'internal-idp' },
    });
    const consumer = await connectAs('consumer', 'billing');
    const reply = await waitFor(
      async () => {
        const r = await call(consumer, tokenGetSubject('billing', 'svc'));
        return r.ok ? r : undefined;
      },
      { timeoutMs: 15_000 },
    );
    expect(reply.token).toMatchObject({ tenant: 'billing', connection: 'svc', provider: 'internal-idp' });
    expect(sandbox.stats.clientCredentialsGrants).toBeGreaterThanOrEqual(1);

    // One with a long-lived token (due in about 48 minutes), held in a consumer's pushed cache.
    await call(admin, adminSubject('register', 'billing', 'long'), {
      provider: 'internal-idp',
      accessToken: 'long-lived-service-token',
      expiresIn: 3600,
    });
    const user = userFor('consumer', 'billing');
    client = new TokenClient({
      servers: nats.url,
      connectOptions: credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      tenants: ['billing'],
      trustedSigners: [refresher!.signerPublicKey],
    });
    await client.start();
    expect(await client.getAccessToken({ tenant: 'billing', connection: 'long' })).toBe('long-lived-service-token');
  }, 60_000);

  it('connect: refused with forbidden for a tenant the provider does not allow, a URL for one it does', async () => {
    const evil = await connectAs('tenant-admin', 'evil');
    const refused = await call(evil, adminSubject('connect', 'evil', 'crm'), { provider: 'sandbox' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(refused.error.message).toMatch(/`tenants` of provider "sandbox"/);
    const admin = await connectAs('tenant-admin', 'billing');
    const allowed = await call(admin, adminSubject('connect', 'billing', 'crm'), { provider: 'sandbox' });
    expect(allowed).toMatchObject({ ok: true });
    // Consent is given now; the callback is delivered only after the providers file changed (below).
    // The person's browser presses the page's button; the same browser brings the callback.
    const page = await get(await person.startAt(allowed.url));
    const consentId = /name="consent" value="([^"]+)"/.exec(page.text)![1]!;
    const answered = await get(sandbox.authorizationUrl, { consent: consentId, decision: 'allow' });
    expect(answered.location).toMatch(/\/oauth\/callback\?/);
    pendingCallback = answered.location;
  }, 60_000);

  it('a provider withdrawn from a tenant (providers file changed, refresher restarted): no more token requests, describe says why, token.get and refresh answer forbidden', async () => {
    const admin = await connectAs('tenant-admin', 'billing');
    const consumer = await connectAs('consumer', 'billing');
    // The credential of the positive control, refreshed every few seconds so far.
    expect(await call(admin, adminSubject('describe', 'billing', 'svc'))).toMatchObject({
      ok: true,
      credential: { status: 'active' },
    });
    await refresher!.close();
    refresher = undefined;
    const before = sandbox.stats.clientCredentialsGrants;
    // A refused credential is looked at again only after MISCONFIGURED_RETRY_MS: long here, so
    // that only the start-up's check can make it resume in the next case.
    refresher = await startTestRefresher({ ...env, MISCONFIGURED_RETRY_MS: '600000' }, providers(['acme-*']));

    // Its next due refresh (tokens live 4 s) records the refusal instead of asking the provider.
    const described = await waitFor(
      async () => {
        const r = await call(admin, adminSubject('describe', 'billing', 'svc'));
        return r.ok && r.credential.status === 'failing' ? r.credential : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(described.lastError.code).toBe('forbidden');
    expect(described.lastError.message).toMatch(/`tenants` of provider "internal-idp"/);

    // Well past the stored token's expiry.
    await sleep(6_000);
    const got = await call(consumer, tokenGetSubject('billing', 'svc'));
    expect(got).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(got.error.message).toMatch(/`tenants` of provider "internal-idp"/);
    expect(await call(admin, adminSubject('refresh', 'billing', 'svc'))).toMatchObject({
      ok: false,
      error: { code: 'forbidden' },
    });
    expect(await call(consumer, tokenGetSubject('billing', 'svc'), { minTtlSeconds: 0 })).toMatchObject({
      ok: false,
      error: { code: 'forbidden' },
    });
    const after = await call(admin, adminSubject('describe', 'billing', 'svc'));
    expect(after.credential).toMatchObject({ status: 'failing', lastError: { code: 'forbidden' } });
    expect(sandbox.stats.clientCredentialsGrants).toBe(before);

    // A connect session started while the tenant was allowed: its code is not exchanged.
    const callback = await person.get(pendingCallback!);
    expect(callback.status, callback.text).toBe(403);
    expect(callback.text).toMatch(/no longer open to this tenant/);
    expect(sandbox.stats.authorizationCodeGrants).toBe(0);
    expect(await call(admin, adminSubject('describe', 'billing', 'crm'))).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });

    // The long-lived one was not due for most of an hour: the start applied the file to it at
    // once, and the consumer's cache, told by token.failed, no longer serves its token.
    const long = await call(admin, adminSubject('describe', 'billing', 'long'));
    expect(long.credential).toMatchObject({ status: 'failing', lastError: { code: 'forbidden' } });
    await expect(client!.getAccessToken({ tenant: 'billing', connection: 'long' })).rejects.toMatchObject({
      code: 'forbidden',
    });
    expect(sandbox.stats.clientCredentialsGrants).toBe(before);
  }, 90_000);

  it('allowed again (providers file changed back, refresher restarted): refreshed at once, served again', async () => {
    const admin = await connectAs('tenant-admin', 'billing');
    await refresher!.close();
    refresher = undefined;
    const before = sandbox.stats.clientCredentialsGrants;
    refresher = await startTestRefresher({ ...env, MISCONFIGURED_RETRY_MS: '600000' }, providers(['billing']));
    // Both resume at once, not MISCONFIGURED_RETRY_MS later (ten minutes).
    for (const connection of ['svc', 'long']) {
      await waitFor(
        async () => {
          const r = await call(admin, adminSubject('describe', 'billing', connection));
          return r.ok && r.credential.status === 'active' && r.credential.lastError === null ? r : undefined;
        },
        { timeoutMs: 15_000 },
      );
    }
    expect(sandbox.stats.clientCredentialsGrants).toBeGreaterThanOrEqual(before + 2);
    const token = await client!.getToken({ tenant: 'billing', connection: 'long' });
    expect(token.accessToken).not.toBe('long-lived-service-token');
  }, 60_000);
});
