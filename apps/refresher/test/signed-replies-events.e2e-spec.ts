import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  credentialId,
  encodeJson,
  EventSigner,
  generateSigningSeed,
  SIGNATURE_HEADER,
  SignatureVerifier,
  SIGNED_AT_HEADER,
  SIGNER_HEADER,
  TOKEN_EVENT_KINDS,
  tokenEventFilter,
  tokenGetSubject,
} from '@tokenkeeper/contracts';
import { fixedHeaders } from '@tokenkeeper/nats';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ReplyCache } from '../src/events/reply-cache.js';
import { RefreshMetrics } from '../src/metrics/refresh.metrics.js';
import { TokenService } from '../src/tokens/token.service.js';
import {
  FILE_SIGNING_SEED,
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

/**
 * Signatures (scheme 2), against a real nats-server, PostgreSQL and the sandbox provider:
 * token.get replies and token.* events are signed over their subject (a reply: the
 * request's), their signing time and their exact bytes, a replica
 * applies only events signed by a key it trusts (its own, EVENT_TRUSTED_SIGNERS), and the
 * hot path signs nothing per request. The bus is permissive here (no permissions): this is
 * the defence-in-depth case, where anyone can publish `token.refreshed.…`.
 */

type Key = { tenant: string; connection: string };

// The only places that know the subjects and payloads.
const askToken = (nc: NatsConnection, key: Key, body: Record<string, unknown> = {}): Promise<Msg> =>
  nc.request(tokenGetSubject(key.tenant, key.connection), encodeJson(body), { timeout: 10_000 });
const admin = (
  caller: RawCaller,
  operation: 'register' | 'refresh' | 'revoke',
  key: Key,
  body: Record<string, unknown> = {},
) => caller.admin(operation, { ...key, ...body });

const decode = (data: Uint8Array) => JSON.parse(Buffer.from(data).toString('utf8'));

/** Sum of a counter's samples whose labels match, from one replica's registry. */
async function counter(refresher: TestRefresher, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await refresher.app.get(RefreshMetrics).registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}
const dropped = (refresher: TestRefresher, reason: string) =>
  counter(refresher, 'tokenkeeper_events_dropped_total', { reason });

/** What this replica would answer from memory for `key`, or undefined. */
function cachedToken(refresher: TestRefresher, key: Key): { version: number; accessToken: string } | undefined {
  const entry = refresher.app.get(ReplyCache).get(credentialId(key));
  return entry && decode(entry.reply.data).token;
}

/** Puts `key`'s current token into this very replica's cache (a token.get it served). */
async function prime(refresher: TestRefresher, key: Key): Promise<void> {
  await refresher.app.get(TokenService).get(key);
  expect(cachedToken(refresher, key)).toBeDefined();
}

describe('signed token replies and events: two replicas sharing one key', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  const replicas: TestRefresher[] = [];
  let caller: RawCaller;
  let forger: RawCaller;
  const acme = { tenant: 'acme', connection: 'github' };
  let realToken = '';

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_signed_events'),
      startSandboxProvider(),
    ]);
    const base = { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() };
    replicas.push(await startTestRefresher(testEnv(base, { REPLICA_ID: 'signed-a' }), sandboxProviders(sandbox)));
    replicas.push(await startTestRefresher(testEnv(base, { REPLICA_ID: 'signed-b' }), sandboxProviders(sandbox)));
    [caller, forger] = await Promise.all([RawCaller.connect(nats.url), RawCaller.connect(nats.url)]);
    const tokens = sandbox.issueTokens();
    realToken = tokens.accessToken;
    expect((await admin(caller, 'register', acme, { provider: 'sandbox', ...tokens, expiresIn: 3600 })).ok).toBe(true);
  });

  afterEach(() => vi.restoreAllMocks());

  afterAll(async () => {
    await Promise.all([caller?.close(), forger?.close()]);
    await Promise.all(replicas.map((r) => r.close()));
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('both replicas sign with the shared key', () => {
    const shared = EventSigner.fromSeed(FILE_SIGNING_SEED).publicKey;
    expect(replicas.map((r) => r.signerPublicKey)).toEqual([shared, shared]);
  });

  it('signs every token.get reply over the request subject and its exact bytes; error replies are not signed', async () => {
    const verifier = new SignatureVerifier([replicas[0].signerPublicKey]);
    const asked = tokenGetSubject(acme.tenant, acme.connection);
    // Enough calls to reach both replicas, through the slow path and from memory.
    for (let i = 0; i < 20; i++) {
      const msg = await askToken(caller.nc, acme);
      expect(decode(msg.data).token).toMatchObject({ ...acme, accessToken: realToken });
      expect(msg.headers?.get(SIGNER_HEADER)).toBe(replicas[0].signerPublicKey);
      expect(msg.headers?.get(SIGNATURE_HEADER)).toMatch(/^v2\./);
      expect(Math.abs(Number(msg.headers?.get(SIGNED_AT_HEADER)) - Date.now())).toBeLessThan(300_000);
      expect(verifier.verify(asked, msg.data, msg.headers, Date.now())).toBe('ok');
      // Not valid as the answer for another credential.
      expect(verifier.verify(tokenGetSubject('acme', 'other'), msg.data, msg.headers, Date.now())).toBe(
        'bad_signature',
      );
      // One byte off and it no longer verifies: the signature covers exactly these bytes.
      const tampered = Uint8Array.from(msg.data);
      tampered[tampered.length - 2] ^= 1;
      expect(verifier.verify(asked, tampered, msg.headers, Date.now())).toBe('bad_signature');
    }
    const missing = await askToken(caller.nc, { tenant: 'acme', connection: 'nothing-here' });
    expect(decode(missing.data)).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(missing.headers?.get(SIGNATURE_HEADER) ?? '').toBe('');
  });

  it('signs every token.* event (registered, refreshed, failed, revoked) over its exact bytes', async () => {
    const key = { tenant: 'acme', connection: 'events' };
    const seen: { subject: string; data: Uint8Array; headers?: MsgHdrs }[] = [];
    const watcher = await RawCaller.connect(nats.url);
    const subs: Subscription[] = TOKEN_EVENT_KINDS.map((kind) =>
      watcher.nc.subscribe(tokenEventFilter(kind, key.tenant, key.connection), {
        callback: (_err, msg) => void seen.push({ subject: msg.subject, data: msg.data, headers: msg.headers }),
      }),
    );
    await watcher.nc.flush();
    try {
      expect(
        (await admin(caller, 'register', key, { provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3600 })).ok,
      ).toBe(true);
      expect((await admin(caller, 'refresh', key)).ok).toBe(true);
      sandbox.injectFault({ type: 'oauth_error', error: 'invalid_grant' }, 1);
      expect((await admin(caller, 'refresh', key)).ok).toBe(false);
      expect((await admin(caller, 'revoke', key)).ok).toBe(true);
      await waitFor(() => new Set(seen.map((e) => e.subject.split('.')[1])).size === 4, {
        message: 'all four event types',
      });
    } finally {
      subs.forEach((s) => s.unsubscribe());
      await watcher.close();
    }
    const verifier = new SignatureVerifier([replicas[0].signerPublicKey]);
    expect(seen.map((e) => e.subject)).toEqual(
      expect.arrayContaining(
        ['registered', 'refreshed', 'failed', 'revoked'].map((kind) => `token.${kind}.acme.events`),
      ),
    );
    for (const event of seen) {
      expect(event.headers?.get(SIGNER_HEADER), event.subject).toBe(replicas[0].signerPublicKey);
      expect(verifier.verify(event.subject, event.data, event.headers, Date.now()), event.subject).toBe('ok');
      expect(decode(event.data)).toMatchObject(key);
    }
  });

  it('keeps both caches coherent: a version one replica commits replaces the other one’s entry', async () => {
    await Promise.all(replicas.map((r) => prime(r, acme)));
    const before = cachedToken(replicas[1], acme)!.version;
    await replicas[0].app.get(TokenService).refreshNow(acme);
    await waitFor(() => cachedToken(replicas[1], acme)!.version === before + 1, {
      message: 'replica b applied replica a’s signed event',
    });
    expect(await dropped(replicas[1], 'untrusted')).toBe(0);
    // Every answer, whichever replica gives it, is the new version.
    const current = cachedToken(replicas[0], acme)!;
    for (let i = 0; i < 20; i++) expect(decode((await askToken(caller.nc, acme)).data).token).toMatchObject(current);
    realToken = current.accessToken;
  });

  it('a forged higher version (unsigned, signed by another key, or signed by the right key for another tenant) is served by no replica', async () => {
    await Promise.all(replicas.map((r) => prime(r, acme)));
    const real = cachedToken(replicas[0], acme)!;
    const before = await Promise.all(
      replicas.map(async (r) => ({
        unsigned: await dropped(r, 'unsigned'),
        untrusted: await dropped(r, 'untrusted'),
        mismatch: await dropped(r, 'mismatch'),
      })),
    );
    const forged = (body: Record<string, unknown> = {}) =>
      encodeJson({
        eventId: '00000000-0000-4000-8000-000000000000',
        ...acme,
        provider: 'sandbox',
        accessToken: 'attacker-token',
        tokenType: 'Bearer',
        expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
        version: real.version + 1_000,
        refreshedAt: new Date().toISOString(),
        ...body,
      });
    const rightKey = EventSigner.fromSeed(FILE_SIGNING_SEED);
    const otherKey = EventSigner.fromSeed(generateSigningSeed());
    const subject = 'token.refreshed.acme.github';
    const UNSIGNED = 20;
    for (let i = 0; i < UNSIGNED; i++) forger.nc.publish(subject, forged());
    const byOther = forged();
    const now = Date.now();
    forger.nc.publish(subject, byOther, { headers: fixedHeaders(otherKey.headersFor(subject, byOther, now)) });
    // Another key claiming to be the right one.
    forger.nc.publish(subject, byOther, {
      headers: fixedHeaders({
        [SIGNATURE_HEADER]: otherKey.sign(subject, byOther, now),
        [SIGNER_HEADER]: rightKey.publicKey,
        [SIGNED_AT_HEADER]: String(now),
      }),
    });
    // Validly signed, but its body names another tenant than its subject, and the other way round.
    const otherTenant = forged({ tenant: 'evil' });
    forger.nc.publish(subject, otherTenant, { headers: fixedHeaders(rightKey.headersFor(subject, otherTenant, now)) });
    const intoAcme = forged();
    forger.nc.publish('token.refreshed.evil.github', intoAcme, {
      headers: fixedHeaders(rightKey.headersFor('token.refreshed.evil.github', intoAcme, now)),
    });
    await forger.nc.flush();

    for (const [i, replica] of replicas.entries()) {
      await waitFor(async () => (await dropped(replica, 'mismatch')) >= before[i].mismatch + 2, {
        message: `replica ${i} saw the forgeries`,
      });
      expect(await dropped(replica, 'unsigned')).toBe(before[i].unsigned + UNSIGNED);
      expect(await dropped(replica, 'untrusted')).toBe(before[i].untrusted + 1);
      expect(await dropped(replica, 'bad_signature')).toBeGreaterThanOrEqual(1);
      expect(cachedToken(replica, acme)).toEqual(real);
    }
    for (let i = 0; i < 20; i++) {
      const token = decode((await askToken(caller.nc, acme)).data).token;
      expect(token).toMatchObject({ accessToken: real.accessToken, version: real.version });
    }
    // Rate-limited: one line per replica and reason, not one per dropped event, and never
    // the forged token. (Nest's logger is process-wide: the replicas' lines share a capture.)
    const text = replicas.map((r) => r.logs.text()).join('');
    expect(text).not.toContain('attacker-token');
    const unsignedLines = text
      .split('\n')
      .filter((line) => line.includes('dropped a token event') && line.includes('"reason":"unsigned"'));
    expect(unsignedLines.length).toBeGreaterThanOrEqual(1);
    expect(unsignedLines.length).toBeLessThanOrEqual(replicas.length);
  });

  it('signs nothing per request: 1,000 cache hits, no signature made', async () => {
    await Promise.all(replicas.map((r) => prime(r, acme)));
    const hitsBefore = (
      await Promise.all(replicas.map((r) => counter(r, 'tokenkeeper_token_get_cache_hits_total')))
    ).reduce((a, b) => a + b, 0);
    const sign = vi.spyOn(EventSigner.prototype, 'sign');
    for (let batch = 0; batch < 10; batch++) {
      const replies = await Promise.all(Array.from({ length: 100 }, () => askToken(caller.nc, acme)));
      for (const msg of replies) expect(msg.headers?.get(SIGNATURE_HEADER)).toMatch(/^v2\.[A-Za-z0-9_-]{86}$/);
    }
    expect(sign).not.toHaveBeenCalled();
    const hitsAfter = (
      await Promise.all(replicas.map((r) => counter(r, 'tokenkeeper_token_get_cache_hits_total')))
    ).reduce((a, b) => a + b, 0);
    expect(hitsAfter - hitsBefore).toBe(1_000);
    // The spy does see signing where it happens: a new version is signed once per replica
    // that caches it, plus its event.
    await replicas[0].app.get(TokenService).refreshNow(acme);
    await waitFor(() => sign.mock.calls.length >= 3, { message: 'the new version signed' });
    await askToken(caller.nc, acme);
    expect(sign.mock.calls.length).toBe(3);
  });
});

describe('signing-key rotation: a replica with another key, listed in EVENT_TRUSTED_SIGNERS', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let oldKeyReplica: TestRefresher;
  let newKeyReplica: TestRefresher;
  let strangerReplica: TestRefresher;
  let caller: RawCaller;
  const key = { tenant: 'acme', connection: 'rotated' };

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_signing_rotation'),
      startSandboxProvider(),
    ]);
    const base = { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() };
    const oldSeed = generateSigningSeed();
    const newSeed = generateSigningSeed();
    const pub = (seed: string) => EventSigner.fromSeed(seed).publicKey;
    oldKeyReplica = await startTestRefresher(
      testEnv(base, { REPLICA_ID: 'old-key', EVENT_SIGNING_KEY: oldSeed, EVENT_TRUSTED_SIGNERS: pub(newSeed) }),
      sandboxProviders(sandbox),
    );
    newKeyReplica = await startTestRefresher(
      testEnv(base, { REPLICA_ID: 'new-key', EVENT_SIGNING_KEY: newSeed, EVENT_TRUSTED_SIGNERS: ` ${pub(oldSeed)} ,` }),
      sandboxProviders(sandbox),
    );
    // Neither listed nor listing: its events are somebody else's.
    strangerReplica = await startTestRefresher(
      testEnv(base, { REPLICA_ID: 'stranger', EVENT_SIGNING_KEY: '' }),
      sandboxProviders(sandbox),
    );
    caller = await RawCaller.connect(nats.url);
    expect(
      (await admin(caller, 'register', key, { provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3600 })).ok,
    ).toBe(true);
  });

  afterAll(async () => {
    await caller?.close();
    await Promise.all([oldKeyReplica, newKeyReplica, strangerReplica].map((r) => r?.close()));
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('each applies the other’s events; a replica trusting neither drops them as untrusted', async () => {
    expect(new Set([oldKeyReplica, newKeyReplica, strangerReplica].map((r) => r.signerPublicKey)).size).toBe(3);
    await Promise.all([oldKeyReplica, newKeyReplica, strangerReplica].map((r) => prime(r, key)));
    // The registration went through the queue group: if the stranger took it, the others
    // dropped its `registered` event. Only what follows counts.
    const untrustedBefore = await Promise.all(
      [oldKeyReplica, newKeyReplica, strangerReplica].map((r) => dropped(r, 'untrusted')),
    );

    await newKeyReplica.app.get(TokenService).refreshNow(key);
    await waitFor(() => cachedToken(oldKeyReplica, key)!.version === 2, {
      message: 'old-key replica applied the new key’s event',
    });
    await oldKeyReplica.app.get(TokenService).refreshNow(key);
    await waitFor(() => cachedToken(newKeyReplica, key)!.version === 3, {
      message: 'new-key replica applied the old key’s event',
    });

    await waitFor(async () => (await dropped(strangerReplica, 'untrusted')) >= untrustedBefore[2] + 2, {
      message: 'stranger dropped both',
    });
    expect(cachedToken(strangerReplica, key)!.version).toBe(1);
    expect(await dropped(oldKeyReplica, 'untrusted')).toBe(untrustedBefore[0]);
    expect(await dropped(newKeyReplica, 'untrusted')).toBe(untrustedBefore[1]);
    // What each replica caches is signed with its own key, whoever announced the version.
    const own = oldKeyReplica.app.get(ReplyCache).get(credentialId(key))!.reply;
    expect(own.headers.get(SIGNER_HEADER)).toBe(oldKeyReplica.signerPublicKey);
    expect(
      new SignatureVerifier([oldKeyReplica.signerPublicKey]).verify(
        tokenGetSubject(key.tenant, key.connection),
        own.data,
        own.headers,
        Date.now(),
      ),
    ).toBe('ok');
  });
});
