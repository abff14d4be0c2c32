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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLog, providersFor } from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * The connect flow of a provider whose URLs are the shop's own: the connect request's
 * `connectionConfig` fills the authorization URL the browser is sent to and the token URL the
 * code is exchanged at, and is stored with the credential, with the request's `metadata`
 * and the token response's extras.
 */
describe('connect flow with connectionConfig, metadata and extras', () => {
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
      createTestDatabase('tk_connect_fields'),
      startSandboxProvider({ responseFields: { instance_url: 'https://acme-store.example.com' } }),
      freePort(),
    ]);
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
        { PUBLIC_HTTP_PORT: String(publicPort), PUBLIC_BASE_URL: publicBase() },
      ),
      providersFor({
        shop: {
          sandbox,
          tokenUrl: `${sandbox.url}/shops/{shop}/oauth/token`,
          authorizationUrl: `${sandbox.url}/shops/{shop}/authorize`,
          scopes: ['read'],
          tokenFields: ['instance_url'],
        },
      }),
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

  it('sends the browser and the code to the shop’s URLs and stores config, metadata and extras', async () => {
    const key = { tenant: 'acme', connection: 'store' };
    const reply = await caller.admin('connect', {
      ...key,
      provider: 'shop',
      connectionConfig: { shop: 'acme-store' },
      metadata: { displayName: 'Acme Store' },
    });
    expect(reply.ok, JSON.stringify(reply)).toBe(true);
    const person = new ConnectPerson();
    const page = await person.openLink(reply.url);
    expect(page.text).toContain('Acme Store');
    const toProvider = await person.startAt(reply.url);
    expect(new URL(toProvider).pathname).toBe('/shops/acme-store/authorize');
    const consentPage = await person.get(toProvider);
    expect(consentPage.status, consentPage.text).toBe(200);
    const consentId = /name="consent" value="([^"]+)"/.exec(consentPage.text)![1]!;
    const answered = await person.postForm(sandbox.authorizationUrl, { consent: consentId, decision: 'allow' });
    const done = await person.get(answered.location!);
    expect(done.status, done.text).toBe(200);

    expect(sandbox.tokenRequestPaths).toEqual(['/shops/acme-store/oauth/token']);
    const registered = await waitFor(() => events.of('registered', key.tenant, key.connection)[0]);
    expect(registered.data.extras).toEqual({ instance_url: 'https://acme-store.example.com' });
    const described = await caller.admin('describe', key);
    expect(described.credential).toMatchObject({
      connectionConfig: { shop: 'acme-store' },
      metadata: { displayName: 'Acme Store' },
    });
    expect((await caller.get(key)).token.extras).toEqual({ instance_url: 'https://acme-store.example.com' });
  });
});
