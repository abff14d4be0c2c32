import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import {
  type CredentialKey,
  EventSigner,
  generateSigningSeed,
  TOKEN_EVENT_KINDS,
  tokenEventSubject,
} from '@tokenkeeper/contracts';
import { freePort, type NatsServerHandle, startNatsServer, waitFor } from '@tokenkeeper/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeRefresher, tokenView } from '../test/fake-refresher.fixture.js';
import { TokenClientError } from './token-client.error.js';
import type { TokenClientOptions } from './token-client.options.js';
import { TokenClient } from './token.client.js';

/**
 * Defence in depth on a permissive bus: anyone may publish events and
 * answer token.get, so only signatures and name agreement keep forgeries out.
 */

let server: NatsServerHandle;
let monitorPort: number;
let refresher: FakeRefresher;
const clients: TokenClient[] = [];
const warnings: string[] = [];
const logger = { warn: (message: string) => void warnings.push(message) };
let seq = 0;

function newKey(): CredentialKey {
  return { tenant: `v${++seq}`, connection: 'github' };
}

async function newClient(options: TokenClientOptions): Promise<TokenClient> {
  const client = new TokenClient({
    servers: server.url,
    logger,
    trustedSigners: [refresher.signerPublicKey],
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

/** The subjects the server itself holds for the connection of that name (monitoring endpoint). */
async function serverSideSubscriptions(connectionName: string): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/connz?subs=1`);
  const body = (await res.json()) as { connections: Array<{ name?: string; subscriptions_list?: string[] }> };
  const conn = body.connections.find((c) => c.name === connectionName);
  if (conn === undefined) throw new Error(`no connection named ${connectionName}`);
  return conn.subscriptions_list ?? [];
}

/** Whether a NATS subscription subject matches a concrete subject. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

beforeAll(async () => {
  monitorPort = await freePort();
  server = await startNatsServer({ args: ['-m', String(monitorPort)] });
  refresher = await FakeRefresher.start(server.url);
});

afterEach(async () => {
  warnings.length = 0;
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await refresher?.close();
  await server?.stop();
});

describe('TokenClient with trustedSigners: events', () => {
  it('drops unsigned, untrusted and badly signed events, counts them by reason, and keeps the cache', async () => {
    const key = newKey();
    const v1 = refresher.set(tokenView(key, 1));
    const client = await newClient({ tenants: [key.tenant] });
    expect(await client.getAccessToken(key)).toBe(v1.accessToken);

    await refresher.publishRefreshed(tokenView(key, 5), 'refreshed', 'unsigned');
    await refresher.publishRefreshed(tokenView(key, 6), 'registered', 'foreign-signer');
    await refresher.publishRefreshed(tokenView(key, 7), 'refreshed', 'bad-signature');
    await refresher.publishRevoked(key, 8, 'foreign-signer');
    await refresher.publishFailed(key, 8, 'reauth_required', 'unsigned');
    await waitFor(() => client.stats.rejectedEvents === 5);

    expect(client.stats.rejectedByReason).toEqual({ unsigned: 2, untrusted: 2, bad_signature: 1 });
    expect(client.stats).toMatchObject({ pushedUpdates: 0, rejectedReplies: 0, malformedEvents: 0 });
    expect(client.peekAccessToken(key)).toBe(v1.accessToken);
    expect(await client.getToken(key)).toMatchObject({ version: 1 });
    // One warning per reason, no payload in it.
    expect(warnings.filter((w) => w.includes('dropped'))).toHaveLength(3);
    expect(warnings.join('\n')).not.toContain('at-');
  });

  it('hands verified recovered and expiring events to their callbacks, and drops forged or malformed ones', async () => {
    const key = newKey();
    const recovered: unknown[] = [];
    const expiring: unknown[] = [];
    const client = await newClient({
      tenants: [key.tenant],
      onRecovered: (event) => void recovered.push(event),
      onExpiring: (event) => void expiring.push(event),
    });
    const names = { tenant: key.tenant, connection: key.connection, provider: 'sandbox' };
    const failedSince = '2026-01-01T00:00:00.000Z';
    const endsAt = '2026-02-01T00:00:00.000Z';
    await refresher.publish('recovered', key, { ...names, version: 3, failedSince, attempts: 4 }, 'unsigned');
    await refresher.publish('expiring', key, { ...names, version: 3, refreshTokenExpiresAt: endsAt }, 'foreign-signer');
    await refresher.publish('recovered', key, { ...names, version: 3, failedSince: 'yesterday', attempts: 4 });
    await refresher.publish('recovered', key, { ...names, version: 3, failedSince, attempts: 4 });
    await refresher.publish('expiring', key, { ...names, version: 3, refreshTokenExpiresAt: endsAt });
    await waitFor(() => expiring.length === 1 && client.stats.rejectedEvents === 2);
    expect(recovered).toEqual([
      { tenant: key.tenant, connection: key.connection, version: 3, failedSince, attempts: 4 },
    ]);
    expect(expiring).toEqual([
      { tenant: key.tenant, connection: key.connection, version: 3, refreshTokenExpiresAt: endsAt },
    ]);
    expect(client.stats.malformedEvents).toBe(1);
  });

  it('a forged higher version signed by an untrusted key does not replace the cached token; a signed one does', async () => {
    const key = newKey();
    const v1 = refresher.set(tokenView(key, 1));
    const client = await newClient({ tenants: [key.tenant] });
    await client.getAccessToken(key);

    const forged = { ...tokenView(key, 99), accessToken: 'attacker-token' };
    await refresher.publishRefreshed(forged, 'refreshed', 'foreign-signer');
    const v2 = tokenView(key, 2);
    await refresher.publishRefreshed(v2);
    await waitFor(() => client.stats.pushedUpdates === 1);

    expect(client.stats.rejectedByReason).toEqual({ untrusted: 1 });
    expect(await client.getAccessToken(key)).toBe(v2.accessToken);
    expect(await client.getAccessToken(key)).not.toBe(v1.accessToken);
    expect(refresher.requestsFor(key)).toHaveLength(1);
  });

  it('trusts every listed key (rotation) and rejects a trusted signer writing another credential', async () => {
    const key = newKey();
    const rotated = EventSigner.fromSeed(generateSigningSeed());
    const client = await newClient({
      tenants: [key.tenant],
      trustedSigners: [refresher.signerPublicKey, rotated.publicKey],
    });

    const view = tokenView(key, 3);
    const data = new TextEncoder().encode(
      JSON.stringify({ ...view, eventId: 'e1', refreshedAt: new Date().toISOString() }),
    );
    const subject = tokenEventSubject('refreshed', key.tenant, key.connection);
    const h = headers();
    for (const [name, value] of Object.entries(rotated.headersFor(subject, data, Date.now()))) h.set(name, value);
    refresher.nc.publish(subject, data, { headers: h });
    // Signed by the trusted fake, but the payload names another connection than the subject.
    const other = tokenView({ tenant: key.tenant, connection: 'slack' }, 9);
    const mismatched = new TextEncoder().encode(JSON.stringify(other));
    refresher.nc.publish(subject, mismatched, { headers: refresher.headersFor(subject, mismatched) });
    await refresher.nc.flush();
    await waitFor(() => client.stats.pushedUpdates === 1 && client.stats.rejectedEvents === 1);

    expect(client.stats.rejectedByReason).toEqual({ subject_mismatch: 1 });
    expect(client.peekAccessToken(key)).toBe(view.accessToken);
    expect(client.size).toBe(1);
  });
});

describe('TokenClient with trustedSigners: what a signature covers', () => {
  it('refuses a genuine refreshed event re-published on token.revoked (or token.failed): the signature names its subject', async () => {
    const key = newKey();
    const v1 = refresher.set(tokenView(key, 1));
    const client = await newClient({ tenants: [key.tenant] });
    expect(await client.getAccessToken(key)).toBe(v1.accessToken);

    const genuine = await refresher.publishRefreshed(tokenView(key, 1));
    await refresher.publishRaw(genuine, tokenEventSubject('revoked', key.tenant, key.connection));
    await refresher.publishRaw(genuine, tokenEventSubject('failed', key.tenant, key.connection));
    // A genuine event sent after them, as the sentinel that they have all arrived.
    await refresher.publishRefreshed(tokenView({ tenant: key.tenant, connection: 'sentinel' }, 1));
    await waitFor(() => client.stats.rejectedEvents === 2 && client.stats.pushedUpdates === 1);
    expect(client.stats.rejectedByReason).toEqual({ bad_signature: 2 });
    expect(client.peekAccessToken(key)).toBe(v1.accessToken);
  });

  it.each([
    ['too-old', 'too_old'],
    ['too-new', 'too_new'],
    ['v1', 'unsupported_scheme'],
  ] as const)('drops a %s event and a %s reply', async (forgery, reason) => {
    const key = newKey();
    refresher.set(tokenView(key, 1));
    refresher.forgeReplies(key, forgery);
    const client = await newClient({ tenants: [key.tenant] });
    const err = await rejection(client.getAccessToken(key));
    expect(err.message).toContain(`unverified reply (${reason})`);
    refresher.forgeReplies(key, null);
    expect(await client.getAccessToken(key)).toBe(tokenView(key, 1).accessToken);

    await refresher.publishRefreshed(tokenView(key, 2), 'refreshed', forgery);
    await waitFor(() => client.stats.rejectedEvents === 1);
    expect(client.stats.rejectedByReason).toEqual({ [reason]: 2 });
    expect(client.peekAccessToken(key)).toBe(tokenView(key, 1).accessToken);
  });

  it('judges age on its own clock against signatureMaxAgeSeconds', async () => {
    const key = newKey();
    let skew = 0;
    const client = await newClient({
      tenants: [key.tenant],
      signatureMaxAgeSeconds: 60,
      clock: () => Date.now() + skew,
    });
    const event = await refresher.publishRefreshed(tokenView(key, 1));
    await waitFor(() => client.stats.pushedUpdates === 1);
    // The same signed bytes read 61 s later: too old for this client's 60 s window.
    skew = 61_000;
    await refresher.publishRaw(event);
    await waitFor(() => client.stats.rejectedEvents === 1);
    expect(client.stats.rejectedByReason).toEqual({ too_old: 1 });
    expect(() => new TokenClient({ tenants: ['a'], signatureMaxAgeSeconds: 0 })).toThrow(/signatureMaxAgeSeconds/);
  });
});

describe('TokenClient with trustedSigners: credentials it never held', () => {
  it('a client started after a revoke refuses a replayed token.registered of the revoked token (learnt from token.get)', async () => {
    const key = newKey();
    // Before this client exists: registered v1, then revoked.
    const registered = await refresher.publishRefreshed(tokenView(key, 1), 'registered');
    refresher.failWith(key, 'revoked');
    const client = await newClient({ tenants: [key.tenant] });

    expect((await rejection(client.getAccessToken(key))).code).toBe('revoked');
    expect(client.tombstones).toBe(1);
    await refresher.publishRaw(registered);
    await waitFor(() => client.stats.staleEventsIgnored === 1);
    expect(client.peekAccessToken(key)).toBeUndefined();
    expect(client.size).toBe(0);
    expect((await rejection(client.getAccessToken(key))).code).toBe('revoked');

    // Registered again: the verified answer is taken, and the mark is gone.
    const v3 = refresher.set(tokenView(key, 3));
    expect(await client.getAccessToken(key)).toBe(v3.accessToken);
    expect(client.tombstones).toBe(0);
  });

  it('keeps the version of a revoke it heard for a credential it never held; only a newer token passes', async () => {
    const key = newKey();
    const registered = await refresher.publishRefreshed(tokenView(key, 1), 'registered');
    const client = await newClient({ tenants: [key.tenant] });
    await refresher.publishRevoked(key, 2);
    await waitFor(() => client.tombstones === 1);
    expect(client.size).toBe(0);

    await refresher.publishRaw(registered);
    await waitFor(() => client.stats.staleEventsIgnored === 1);
    expect(client.peekAccessToken(key)).toBeUndefined();
    // A token.get answer at the revoked version is refused too (fail closed).
    refresher.set(tokenView(key, 2));
    expect((await rejection(client.getAccessToken(key))).code).toBe('revoked');

    const v3 = tokenView(key, 3);
    await refresher.publishRefreshed(v3, 'registered');
    await waitFor(() => client.peekAccessToken(key) === v3.accessToken);
    expect(client.tombstones).toBe(0);
  });

  it('bounds the marks (maxTombstones) and keeps an evicted entry’s version', async () => {
    const tenant = `v${++seq}`;
    const client = await newClient({ tenants: [tenant], maxTombstones: 2, maxEntries: 1 });
    for (const connection of ['a', 'b', 'c']) await refresher.publishRevoked({ tenant, connection }, 5);
    await waitFor(() => client.stats.pushedUpdates === 3);
    expect(client.tombstones).toBe(2);

    // maxEntries 1: caching b evicts a, whose version stays known.
    const client2 = await newClient({ tenants: [`${tenant}x`], maxEntries: 1 });
    const a = { tenant: `${tenant}x`, connection: 'a' };
    const oldA = await refresher.publishRefreshed(tokenView(a, 1));
    await refresher.publishRefreshed(tokenView(a, 2));
    await refresher.publishRefreshed(tokenView({ tenant: a.tenant, connection: 'b' }, 1));
    await waitFor(() => client2.stats.evictions === 1);
    await refresher.publishRaw(oldA);
    await waitFor(() => client2.stats.staleEventsIgnored === 1);
    expect(client2.peekAccessToken(a)).toBeUndefined();
  });
});

describe('TokenClient with trustedSigners: token.get replies', () => {
  it.each([
    ['unsigned', 'unsigned'],
    ['foreign-signer', 'untrusted'],
    ['bad-signature', 'bad_signature'],
  ] as const)('fails the call with internal and caches nothing for a %s reply', async (forgery, reason) => {
    const key = newKey();
    refresher.set(tokenView(key, 1));
    refresher.forgeReplies(key, forgery);
    const client = await newClient({ tenants: [key.tenant] });

    const err = await rejection(client.getAccessToken(key));
    expect(err.code).toBe('internal');
    expect(err.message).toContain(`unverified reply (${reason})`);
    expect(err.message).not.toContain('at-');
    expect(client.stats).toMatchObject({ rejectedReplies: 1, rejectedEvents: 0, rejectedByReason: { [reason]: 1 } });
    expect(client.size).toBe(0);

    refresher.forgeReplies(key, null);
    expect(await client.getAccessToken(key)).toBe(tokenView(key, 1).accessToken);
    expect(refresher.requestsFor(key)).toHaveLength(2);
  });

  it('refuses a signed reply carrying another credential than was asked', async () => {
    const key = newKey();
    refresher.set(tokenView(key, 1));
    refresher.forgeReplies(key, { otherCredential: { tenant: key.tenant, connection: 'slack' } });
    const client = await newClient({ tenants: [key.tenant] });

    const err = await rejection(client.getAccessToken(key));
    expect(err.code).toBe('internal');
    expect(err.message).toContain('request_mismatch');
    expect(client.stats).toMatchObject({ rejectedReplies: 1, rejectedByReason: { request_mismatch: 1 } });
    expect(client.size).toBe(0);
    refresher.forgeReplies(key, null);
  });

  it('passes an unsigned error reply on with its code (error replies are not signed)', async () => {
    const key = newKey();
    refresher.failWith(key, 'reauth_required');
    const client = await newClient({ tenants: [key.tenant] });
    expect((await rejection(client.getAccessToken(key))).code).toBe('reauth_required');
    expect(client.stats.rejectedReplies).toBe(0);
  });

  it('puts the credential in the subject and only minTtlSeconds/rejectedVersion in the payload', async () => {
    const key = newKey();
    refresher.set(tokenView(key, 1));
    const client = await newClient({ tenants: [key.tenant] });
    await client.getAccessToken(key);
    await client.rejectToken(key, 1);
    expect(refresher.requestsFor(key).map((r) => [r.subject, r.payload])).toEqual([
      [`token.get.${key.tenant}.${key.connection}`, { minTtlSeconds: 30 }],
      [`token.get.${key.tenant}.${key.connection}`, { minTtlSeconds: 30, rejectedVersion: 1 }],
    ]);
  });
});

describe('TokenClient without trustedSigners', () => {
  let unsigned: FakeRefresher;
  beforeAll(async () => {
    unsigned = await FakeRefresher.start(server.url, { unsigned: true });
  });
  afterAll(async () => {
    await unsigned?.close();
  });

  it('warns once at start, accepts unsigned traffic, and still checks subject/payload agreement', async () => {
    const key = newKey();
    const client = await newClient({ tenants: [key.tenant], trustedSigners: undefined });
    expect(warnings.filter((w) => w.includes('NOT verified'))).toHaveLength(1);
    await client.start();
    expect(warnings.filter((w) => w.includes('NOT verified'))).toHaveLength(1);

    await unsigned.publishRefreshed(tokenView(key, 1));
    const other = tokenView({ tenant: key.tenant, connection: 'slack' }, 9);
    unsigned.nc.publish(tokenEventSubject('refreshed', key.tenant, key.connection), JSON.stringify(other));
    await unsigned.nc.flush();
    await waitFor(() => client.stats.pushedUpdates === 1 && client.stats.rejectedEvents === 1);
    expect(client.stats.rejectedByReason).toEqual({ subject_mismatch: 1 });
    expect(client.peekAccessToken(key)).toBe(tokenView(key, 1).accessToken);
    expect(client.size).toBe(1);
  });

  it('does not warn when signers are trusted', async () => {
    await newClient({ tenants: [newKey().tenant] });
    expect(warnings).toEqual([]);
  });
});

describe('TokenClient scope', () => {
  it('subscribes to every event type of its tenants and connections only; other tenants are never received', async () => {
    const served = newKey();
    const single = { tenant: `v${++seq}`, connection: 'stripe' };
    const stranger = newKey();
    const client = await newClient({
      tenants: [served.tenant],
      connections: [single],
      connectOptions: { name: 'scoped-client' },
    });

    const subjects = await serverSideSubscriptions('scoped-client');
    const events = subjects.filter((s) => s.startsWith('token.'));
    expect(events.sort()).toEqual(
      TOKEN_EVENT_KINDS.flatMap((kind) => [
        `token.${kind}.${served.tenant}.>`,
        `token.${kind}.${single.tenant}.stripe`,
      ]).sort(),
    );
    const strangerSubject = tokenEventSubject('refreshed', stranger.tenant, stranger.connection);
    const otherConnection = tokenEventSubject('refreshed', single.tenant, 'github');
    expect(subjects.filter((s) => matches(s, strangerSubject) || matches(s, otherConnection))).toEqual([]);

    await refresher.publishRefreshed(tokenView(stranger, 1));
    await refresher.publishRefreshed(tokenView({ tenant: single.tenant, connection: 'github' }, 1));
    await refresher.publishRevoked(stranger, 2);
    await refresher.publishRefreshed(tokenView(served, 1)); // sentinel: sent last, on the same connection
    await refresher.publishRefreshed(tokenView(single, 1));
    await waitFor(() => client.stats.pushedUpdates === 2);
    expect(client.stats).toMatchObject({
      pushedUpdates: 2,
      malformedEvents: 0,
      rejectedEvents: 0,
      staleEventsIgnored: 0,
    });
    expect(client.size).toBe(2);
  });

  it('refuses a credential it does not serve, without sending anything', async () => {
    const served = newKey();
    const stranger = newKey();
    refresher.set(tokenView(stranger, 1));
    const client = await newClient({ connections: [served] });

    const err = await rejection(client.getAccessToken(stranger));
    expect(err.code).toBe('bad_request');
    expect(err.message).toContain('not served by this client');
    await expect(client.rejectToken({ tenant: served.tenant, connection: 'other' }, 1)).rejects.toMatchObject({
      code: 'bad_request',
    });
    expect(refresher.requestsFor(stranger)).toHaveLength(0);
    expect(client.stats.fallbacks).toBe(0);
  });

  it('refuses to be built without tenants or connections, or with wildcards', () => {
    expect(() => new TokenClient({ servers: server.url })).toThrow(/needs `tenants`, `connections` or `scopes`/);
    expect(() => new TokenClient({ servers: server.url, tenants: [] })).toThrow(TokenClientError);
    expect(() => new TokenClient({ servers: server.url, tenants: ['*'] })).toThrow(/tenants\[\] must match/);
    expect(() => new TokenClient({ servers: server.url, subscribe: [{ tenant: '*' }] })).toThrow(/wildcards/);
    expect(() => new TokenClient({ servers: server.url, tenants: ['a'], trustedSigners: ['SUAM-not-a-key'] })).toThrow(
      /trusted signer #1/,
    );
  });
});

describe('TokenClient inboxPrefix', () => {
  it('receives token.get replies under its own prefix', async () => {
    const key = newKey();
    refresher.set(tokenView(key, 1));
    const spy: NatsConnection = await connect({ servers: server.url });
    try {
      const seen: string[] = [];
      spy.subscribe('_INBOX_billing.>', { callback: (err, msg) => void (err === null && seen.push(msg.subject)) });
      const wide: string[] = [];
      spy.subscribe('_INBOX.>', { callback: (err, msg) => void (err === null && wide.push(msg.subject)) });
      await spy.flush();

      const client = await newClient({ tenants: [key.tenant], inboxPrefix: '_INBOX_billing' });
      expect(await client.getAccessToken(key)).toBe(tokenView(key, 1).accessToken);
      await waitFor(() => seen.length === 1);
      expect(seen[0]).toMatch(/^_INBOX_billing\./);
      expect(wide).toEqual([]);
    } finally {
      await spy.close();
    }
  });

  it('is refused together with a provided connection, whose own prefix applies', async () => {
    const nc = await connect({ servers: server.url, inboxPrefix: '_INBOX_shared' });
    try {
      expect(() => new TokenClient({ nc, tenants: ['a'], inboxPrefix: '_INBOX_x' })).toThrow(
        /set it on that connection/,
      );
      expect(() => new TokenClient({ servers: server.url, tenants: ['a'], inboxPrefix: '_INBOX.>' })).toThrow(
        /without wildcards/,
      );
    } finally {
      await nc.close();
    }
  });
});
