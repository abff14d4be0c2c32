import type { CredentialKey } from '@tokenkeeper/contracts';
import { type NatsServerHandle, startNatsServer, waitFor } from '@tokenkeeper/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeRefresher, tokenView } from '../test/fake-refresher.fixture.js';
import { TokenClient } from './token.client.js';

/**
 * After a database restore rolls versions back, a token.get answer corrects
 * the client, although its version is lower than the cached one. Pushed events keep
 * "highest version wins", and an event heard while the request was out beats its answer.
 */
let server: NatsServerHandle;
let refresher: FakeRefresher;
const clients: TokenClient[] = [];
let seq = 0;

function newKey(): CredentialKey {
  return { tenant: `restore${++seq}`, connection: 'github' };
}

async function newClient(key: CredentialKey): Promise<TokenClient> {
  const client = new TokenClient({
    servers: server.url,
    tenants: [key.tenant],
    trustedSigners: [refresher.signerPublicKey],
  });
  clients.push(client);
  await client.start();
  return client;
}

/** Holds v9 from a pushed event, as a client does before the database is restored. */
async function clientHolding(key: CredentialKey, version: number): Promise<TokenClient> {
  const client = await newClient(key);
  await refresher.publishRefreshed(tokenView(key, version));
  await waitFor(() => client.peekAccessToken(key) === `at-${key.tenant}-${key.connection}-v${version}`);
  return client;
}

beforeAll(async () => {
  server = await startNatsServer();
  refresher = await FakeRefresher.start(server.url);
});

afterEach(async () => {
  refresher.delayMs = 0;
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await refresher?.close();
  await server?.stop();
});

describe('TokenClient after a database restore (lower versions)', () => {
  it('a token.get answer (asked for by minTtl) replaces a higher cached version; later events above it apply', async () => {
    const key = newKey();
    const client = await clientHolding(key, 9);
    // The restored refresher knows v3 only.
    refresher.set(tokenView(key, 3));
    // More validity than the cached token has left: the client must ask.
    const view = await client.getToken(key, { minTtlSeconds: 7200 });
    expect(view.version).toBe(3);
    expect(client.peekAccessToken(key)).toBe(`at-${key.tenant}-${key.connection}-v3`);
    expect((await client.getToken(key)).version).toBe(3);

    // The refresher goes on from v3: v4 is news, not a stale event.
    await refresher.publishRefreshed(tokenView(key, 4));
    await waitFor(() => client.peekAccessToken(key) === `at-${key.tenant}-${key.connection}-v4`);
  });

  it('a token.get with rejectedVersion: the restored refresher answers v3, the client serves v3', async () => {
    const key = newKey();
    const client = await clientHolding(key, 9);
    refresher.set(tokenView(key, 3));
    const view = await client.rejectToken(key, 9);
    expect(view.version).toBe(3);
    expect((await client.getToken(key)).version).toBe(3);
    expect(refresher.requestsFor(key)).toHaveLength(1);
  });

  it('race: an event v10 heard while the token.get was in flight is not overwritten by its answer v3', async () => {
    const key = newKey();
    const client = await clientHolding(key, 9);
    refresher.set(tokenView(key, 3));
    refresher.delayMs = 300;
    const pending = client.getToken(key, { minTtlSeconds: 7200 });
    await waitFor(() => refresher.requestsFor(key).length === 1);
    await refresher.publishRefreshed(tokenView(key, 10));
    await waitFor(() => client.peekAccessToken(key) === `at-${key.tenant}-${key.connection}-v10`);
    const answered = await pending;
    expect(answered.version).toBe(10);
    expect(client.peekAccessToken(key)).toBe(`at-${key.tenant}-${key.connection}-v10`);
  });

  it('pushed events keep "highest version wins": a lower pushed version does not replace the cached one', async () => {
    const key = newKey();
    const client = await clientHolding(key, 9);
    await refresher.publishRefreshed(tokenView(key, 3));
    await refresher.publishRefreshed(tokenView(key, 11));
    await waitFor(() => client.peekAccessToken(key) === `at-${key.tenant}-${key.connection}-v11`);
    expect(client.stats.staleEventsIgnored).toBe(1);
  });
});
