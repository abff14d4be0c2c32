import { type CredentialKey, tokenEventSubject } from '@tokenkeeper/contracts';
import { type NatsServerHandle, startNatsServer, waitFor } from '@tokenkeeper/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeRefresher, tokenView } from '../test/fake-refresher.fixture.js';
import { TokenClientError } from './token-client.error.js';
import type { TokenClientOptions } from './token-client.options.js';
import { TokenClient } from './token.client.js';

let server: NatsServerHandle;
let refresher: FakeRefresher;
const clients: TokenClient[] = [];
let seq = 0;
/** Tenants made by the running test: what its clients serve unless told otherwise. */
let testTenants: string[] = [];
const warnings: string[] = [];
const logger = { warn: (message: string) => void warnings.push(message) };

/** A fresh credential (and tenant) per test, so that tests sharing one server cannot see each other's events. */
function newKey(): CredentialKey {
  const key = { tenant: `t${++seq}`, connection: 'github' };
  testTenants.push(key.tenant);
  return key;
}

/** A client that trusts the fake refresher's key and serves the test's tenants. */
async function newClient(options: Partial<TokenClientOptions> = {}): Promise<TokenClient> {
  const client = new TokenClient({
    servers: server.url,
    tenants: [...testTenants],
    trustedSigners: [refresher.signerPublicKey],
    logger,
    ...options,
  });
  clients.push(client);
  await client.start();
  return client;
}

async function rejection(promise: Promise<unknown>): Promise<TokenClientError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenClientError);
  return err as TokenClientError;
}

beforeAll(async () => {
  server = await startNatsServer();
  refresher = await FakeRefresher.start(server.url);
});

afterEach(async () => {
  testTenants = [];
  warnings.length = 0;
  refresher.delayMs = 0;
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await refresher?.close();
  await server?.stop();
});

describe('TokenClient cache', () => {
  it('answers cache hits without a NATS round trip', async () => {
    const key = newKey();
    const view = refresher.set(tokenView(key, 1));
    const client = await newClient();

    expect(await client.getAccessToken(key)).toBe(view.accessToken);
    for (let i = 0; i < 100; i++) expect(await client.getAccessToken(key)).toBe(view.accessToken);
    expect(client.peekAccessToken(key)).toBe(view.accessToken);
    expect(await client.getToken(key)).toMatchObject({ version: 1, tokenType: 'bearer' });

    expect(refresher.requestsFor(key)).toHaveLength(1);
    expect(client.stats).toMatchObject({ hits: 102, misses: 1, fallbacks: 1 });
  });

  it('lets pushed events update every client', async () => {
    const key = newKey();
    refresher.set(tokenView(key, 1));
    const [a, b] = await Promise.all([newClient(), newClient()]);
    await Promise.all([a.getAccessToken(key), b.getAccessToken(key)]);

    const v2 = refresher.set(tokenView(key, 2));
    await refresher.publishRefreshed(v2);
    await waitFor(() => a.stats.pushedUpdates === 1 && b.stats.pushedUpdates === 1);

    expect(await a.getAccessToken(key)).toBe(v2.accessToken);
    expect(await b.getAccessToken(key)).toBe(v2.accessToken);
    expect(refresher.requestsFor(key)).toHaveLength(2);
  });

  it('keeps the newer token when an older event arrives late', async () => {
    const key = newKey();
    const client = await newClient();
    await refresher.publishRefreshed(tokenView(key, 3));
    await refresher.publishRefreshed(tokenView(key, 2), 'registered');
    await waitFor(() => client.stats.pushedUpdates + client.stats.staleEventsIgnored === 2);

    expect(client.stats).toMatchObject({ pushedUpdates: 1, staleEventsIgnored: 1 });
    expect(await client.getToken(key)).toMatchObject({ version: 3, accessToken: tokenView(key, 3).accessToken });
    expect(refresher.requestsFor(key)).toHaveLength(0);
  });

  it('ignores a duplicate event', async () => {
    const key = newKey();
    const client = await newClient();
    const v1 = tokenView(key, 1);
    await refresher.publishRefreshed(v1);
    await refresher.publishRefreshed(v1);
    await waitFor(() => client.stats.staleEventsIgnored === 1);
    expect(client.stats.pushedUpdates).toBe(1);
    expect(await client.getAccessToken(key)).toBe(v1.accessToken);
  });

  it('drops a revoked token, never serves it, and lets only a newer version back', async () => {
    const key = newKey();
    const v1 = refresher.set(tokenView(key, 1));
    const client = await newClient();
    expect(await client.getAccessToken(key)).toBe(v1.accessToken);

    refresher.failWith(key, 'revoked');
    await refresher.publishRevoked(key, 1);
    await refresher.publishRefreshed(v1); // late, older-or-equal: must not resurrect it
    await waitFor(() => client.stats.pushedUpdates === 1 && client.stats.staleEventsIgnored === 1);

    expect((await rejection(client.getAccessToken(key))).code).toBe('revoked');
    expect(client.peekAccessToken(key)).toBeUndefined();
    expect(refresher.requestsFor(key)).toHaveLength(2);

    const v2 = refresher.set(tokenView(key, 2));
    await refresher.publishRefreshed(v2, 'registered');
    await waitFor(() => client.stats.pushedUpdates === 2);
    expect(await client.getAccessToken(key)).toBe(v2.accessToken);
    expect(refresher.requestsFor(key)).toHaveLength(2);
  });

  it('keeps no cache entry for a credential it never used, only a bounded mark of its revoke', async () => {
    const known = newKey();
    const unknown = newKey();
    refresher.set(tokenView(known, 1));
    const client = await newClient();
    await client.getAccessToken(known);
    await refresher.publishRevoked(unknown, 4);
    await refresher.publishFailed(unknown, 4, 'reauth_required');
    await refresher.publishRevoked(known, 1);
    await waitFor(() => client.stats.pushedUpdates === 2);
    expect(client.size).toBe(1);
    expect(client.tombstones).toBe(1);
    expect(client.stats.staleEventsIgnored).toBe(0);
    expect(client.peekAccessToken(known)).toBeUndefined();
  });

  it('remembers a revocation that arrives while its token.get is in flight', async () => {
    const key = newKey();
    refresher.set(tokenView(key, 1));
    refresher.delayMs = 150;
    const client = await newClient();
    const pending = client.getAccessToken(key).then(
      () => null,
      (e: unknown) => e,
    );
    await waitFor(() => refresher.requestsFor(key).length === 1);
    await refresher.publishRevoked(key, 1);
    await waitFor(() => client.stats.pushedUpdates === 1);
    // The answer (version 1, fetched before the revocation) must not be cached or served.
    expect(await pending).toMatchObject({ code: 'revoked' });
    expect(client.peekAccessToken(key)).toBeUndefined();
  });

  it('does not serve a token marked reauth_required', async () => {
    const key = newKey();
    const v1 = refresher.set(tokenView(key, 1));
    const client = await newClient();
    expect(await client.getAccessToken(key)).toBe(v1.accessToken);

    refresher.failWith(key, 'reauth_required');
    await refresher.publishFailed(key, 1, 'failing'); // retryable: the cache keeps serving
    await refresher.publishFailed(key, 1, 'reauth_required');
    await waitFor(() => client.stats.pushedUpdates === 1);

    const err = await rejection(client.getAccessToken(key));
    expect(err.code).toBe('reauth_required');
    expect(err.retryable).toBe(false);
    expect(err.message).not.toContain(v1.accessToken);
    expect(refresher.requestsFor(key)).toHaveLength(2);
  });

  it('sends exactly one token.get for 1,000 concurrent callers on a cold cache', async () => {
    const key = newKey();
    const view = refresher.set(tokenView(key, 1));
    refresher.delayMs = 50;
    const client = await newClient();

    const tokens = await Promise.all(Array.from({ length: 1000 }, () => client.getAccessToken(key)));
    expect(new Set(tokens)).toEqual(new Set([view.accessToken]));
    expect(refresher.requestsFor(key)).toHaveLength(1);
    expect(client.stats).toMatchObject({ misses: 1000, fallbacks: 1 });
  });

  it('serves from memory only while the token stays valid for minTtlSeconds', async () => {
    const key = newKey();
    const forever = newKey();
    refresher.set(tokenView(key, 1, 120));
    refresher.set(tokenView(forever, 1, null));
    let now = Date.now();
    const client = await newClient({ clock: () => now, defaultMinTtlSeconds: 30 });

    await client.getAccessToken(key);
    await client.getAccessToken(key, { minTtlSeconds: 100 });
    expect(refresher.requestsFor(key)).toHaveLength(1);
    now += 95_000; // 25 s left: below the default 30 s
    await client.getAccessToken(key);
    expect(refresher.requestsFor(key).map((r) => r.minTtlSeconds)).toEqual([30, 30]);

    await client.getAccessToken(forever);
    now += 10 * 365 * 86_400_000;
    await client.getAccessToken(forever, { minTtlSeconds: 86_400 });
    expect(refresher.requestsFor(forever)).toHaveLength(1);
  });

  it('lets a caller needing more validity than the flight in the air ask again', async () => {
    const key = newKey();
    refresher.set(tokenView(key, 1, 3600));
    refresher.delayMs = 30;
    const client = await newClient();
    await Promise.all([client.getToken(key, { minTtlSeconds: 10 }), client.getToken(key, { minTtlSeconds: 7200 })]);
    expect(refresher.requestsFor(key).map((r) => r.minTtlSeconds)).toEqual([10, 7200]);
  });

  it('evicts the least recently used entry beyond maxEntries', async () => {
    const [a, b, c] = [newKey(), newKey(), newKey()];
    for (const key of [a, b, c]) refresher.set(tokenView(key, 1));
    const client = await newClient({ maxEntries: 2 });

    await client.getAccessToken(a);
    await client.getAccessToken(b);
    await client.getAccessToken(a); // a is now the most recently used
    await client.getAccessToken(c); // evicts b
    expect(client.size).toBe(2);
    expect(client.stats.evictions).toBe(1);

    await client.getAccessToken(a);
    expect(refresher.requestsFor(a)).toHaveLength(1);
    await client.getAccessToken(b);
    expect(refresher.requestsFor(b)).toHaveLength(2);
  });
});

describe('TokenClient failures', () => {
  it('maps a request timeout to unavailable', async () => {
    const key = newKey();
    refresher.ignore(key);
    const client = await newClient({ requestTimeoutMs: 200 });
    const err = await rejection(client.getAccessToken(key));
    expect(err.code).toBe('unavailable');
    expect(err.message).toContain('timed out');
    expect(err.retryable).toBe(true);
  });

  it('maps "no responders" to unavailable', async () => {
    const lonely = await startNatsServer();
    try {
      const key = newKey();
      const client = await newClient({ servers: lonely.url });
      expect((await rejection(client.getAccessToken(key))).code).toBe('unavailable');
    } finally {
      await clients.pop()?.close();
      await lonely.stop();
    }
  });

  it('surfaces the contract code of an error reply', async () => {
    const missing = newKey();
    const failing = newKey();
    const client = await newClient();
    const err = await rejection(client.getToken(missing));
    expect(err).toMatchObject({ code: 'not_found', tenant: missing.tenant, connection: missing.connection });

    refresher.failWith(failing, 'refresh_failed');
    expect((await rejection(client.getAccessToken(failing))).code).toBe('refresh_failed');

    const bad = await rejection(client.getAccessToken({ tenant: 'no.dots', connection: 'x' }));
    expect(bad.code).toBe('bad_request');
    expect(refresher.requestsFor({ tenant: 'no.dots', connection: 'x' })).toHaveLength(0);
  });

  it('ignores and counts malformed events, and rejects one naming another credential', async () => {
    const key = newKey();
    const client = await newClient();
    const subject = tokenEventSubject('refreshed', key.tenant, key.connection);
    const signed = (body: string) => {
      const data = new TextEncoder().encode(body);
      refresher.nc.publish(subject, data, { headers: refresher.headersFor(subject, data) });
    };
    signed('not json');
    signed(JSON.stringify({ ...tokenView(key, 1), version: 'one' }));
    signed(JSON.stringify({ ...tokenView(key, 1), tenant: 'someone-else' }));
    await refresher.nc.flush();
    await waitFor(() => client.stats.malformedEvents === 2 && client.stats.rejectedEvents === 1);
    expect(client.stats.rejectedByReason).toEqual({ subject_mismatch: 1 });
    expect(client.size).toBe(0);
  });
});
