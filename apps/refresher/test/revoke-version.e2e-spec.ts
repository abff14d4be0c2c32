import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLog } from './e2e-support.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

/** A revoke is a version of its own, and a revoked token never comes back. */
describe('refresher: revoke bumps the version; a revoked token stays revoked', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let events: EventLog;

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_revver'),
      startSandboxProvider({ accessTokenTtlSeconds: 30 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    caller = await RawCaller.connect(nats.url);
    events = new EventLog(caller.nc);
    await caller.nc.flush();
  });

  afterAll(async () => {
    events?.close();
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('a cached token without expiry: revoke → version+1 in describe and the event, token.get answers revoked from then on', async () => {
    const key = { tenant: 'acme', connection: 'forever' };
    const tokens = sandbox.issueTokens();
    // No expiresIn: a token without expiry, the kind that would be served forever if it came back.
    const reg = await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
    });
    expect(reg.credential).toMatchObject({ version: 1, expiresAt: null });
    const got = await caller.get(key);
    expect(got.token).toMatchObject({ version: 1, expiresAt: null });
    expect((await caller.get(key)).token.version).toBe(1); // served from the reply cache

    expect(await caller.admin('revoke', key)).toMatchObject({ ok: true });
    const described = await caller.admin('describe', key);
    expect(described.credential).toMatchObject({ status: 'revoked', version: 2 });
    const revoked = await waitFor(() => events.of('revoked', key.tenant, key.connection)[0]);
    expect(revoked.data.version).toBe(2);

    for (let i = 0; i < 5; i++) {
      expect(await caller.get(key)).toEqual({ ok: false, error: { code: 'revoked', message: expect.any(String) } });
      expect(await caller.get({ ...key, rejectedVersion: 1 })).toMatchObject({ ok: false, error: { code: 'revoked' } });
    }
  });

  it('re-registering after a revoke gets a newer version again, and it is served', async () => {
    const key = { tenant: 'acme', connection: 'again' };
    const first = sandbox.issueTokens();
    await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      accessToken: first.accessToken,
      refreshToken: first.refreshToken,
      expiresIn: 3600,
    });
    expect((await caller.get(key)).token.version).toBe(1);
    await caller.admin('revoke', key);
    const second = sandbox.issueTokens();
    const reg = await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      accessToken: second.accessToken,
      refreshToken: second.refreshToken,
      expiresIn: 3600,
    });
    expect(reg.credential.version).toBe(3);
    const got = await caller.get(key);
    expect(got.token).toMatchObject({ version: 3, accessToken: second.accessToken });
    expect((await caller.get(key)).token.accessToken).toBe(second.accessToken);
  });
});
