import { TokenClient } from '@tokenkeeper/client';
import { adminSubject } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';

/** The client's signer keys: the refresher's own public key. */
function signerOf(refresher: TestRefresher): string {
  const key = (refresher as TestRefresher & { signerPublicKey?: string }).signerPublicKey;
  if (key === undefined) throw new Error('TestRefresher.signerPublicKey missing: needs the signing (wire) branch');
  return key;
}

/** The client library against the real refresher, the real NATS and the sandbox's protected API. */
describe('client ↔ refresher', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let admin: RawCaller;
  const clients: TokenClient[] = [];
  const key = { tenant: 'acme', connection: 'api' };

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_cli'),
      startSandboxProvider({ accessTokenTtlSeconds: 600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    admin = await RawCaller.connect(nats.url);
    await admin.call(adminSubject('register', key.tenant, key.connection), {
      provider: 'sandbox',
      ...sandbox.issueTokens(),
      expiresIn: 600,
    });
    for (let i = 0; i < 20; i++) {
      const client = new TokenClient({
        servers: nats.url,
        tenants: [key.tenant],
        trustedSigners: [signerOf(refresher)],
        inboxPrefix: `_INBOX_client${i}`,
      });
      await client.start();
      clients.push(client);
    }
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await admin?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('a 401 storm across 20 clients causes exactly one refresh, and every call succeeds after one retry', async () => {
    const warm = await Promise.all(clients.map((c) => c.getToken(key)));
    const version = warm[0].version;
    expect(warm.every((t) => t.version === version)).toBe(true);

    const grantsBefore = sandbox.stats.refreshGrants;
    sandbox.revokeAccessToken(warm[0].accessToken); // the provider drops the live token early
    const responses = await Promise.all(
      clients.flatMap((c) => [1, 2, 3].map(() => c.fetch(sandbox.apiUrl, { method: 'GET' }, key))),
    );
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 200));
    expect(responses.every((r) => r.tokenVersion === version + 1)).toBe(true);
    expect(sandbox.stats.refreshGrants - grantsBefore).toBe(1);
    await Promise.all(responses.map((r) => r.text()));
  });

  it('pushes refreshes to every client: later calls are cache hits with the new version', async () => {
    const before = clients.map((c) => c.stats.fallbacks);
    const refreshed = await admin.call(adminSubject('refresh', key.tenant, key.connection), {});
    const version = refreshed.credential.version;
    await waitFor(async () => {
      const tokens = await Promise.all(clients.map((c) => c.getToken(key)));
      return tokens.every((t) => t.version === version);
    });
    expect(clients.map((c) => c.stats.fallbacks)).toEqual(before);
    // Every reply and event the refresher sent verified: nothing was dropped.
    expect(clients.map((c) => c.stats.rejectedEvents + c.stats.rejectedReplies)).toEqual(clients.map(() => 0));
  });

  it('a revoked credential is never served from the cache again', async () => {
    await admin.call(adminSubject('revoke', key.tenant, key.connection), {});
    for (const client of clients) {
      await expect(
        waitFor(async () =>
          client.getAccessToken(key).then(
            () => null,
            (e) => e,
          ),
        ),
      ).resolves.toMatchObject({ code: 'revoked' });
      // Refused once is not "never again": every later call is refused too, and none is a cache hit.
      const hits = client.stats.hits;
      for (let i = 0; i < 5; i++) {
        expect(client.peekAccessToken(key)).toBeUndefined();
        await expect(client.getAccessToken(key)).rejects.toMatchObject({ code: 'revoked' });
        await expect(client.getToken(key)).rejects.toMatchObject({ code: 'revoked' });
      }
      expect(client.stats.hits).toBe(hits);
    }
  });
});
