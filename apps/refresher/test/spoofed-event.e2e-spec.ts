import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { TokenClient } from '@tokenkeeper/client';
import { credentialId, encodeJson, EventSigner, tokenEventSubject } from '@tokenkeeper/contracts';
import { fixedHeaders } from '@tokenkeeper/nats';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplyCache } from '../src/events/reply-cache.js';
import { RefreshMetrics } from '../src/metrics/refresh.metrics.js';
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
 * The refresher applies every replica's `token.*` events to its reply cache. The subject
 * names the credential: an event whose body names another credential must change nothing,
 * even when it is signed with the replicas' own key (a publisher holding it for one tenant's
 * subjects must not write another's entry). Unsigned forgeries: signed-replies-events.
 */
describe('refresher: token events whose body disagrees with their subject', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_spoofed_event'),
      startSandboxProvider(),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    caller = await RawCaller.connect(nats.url);
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  const signer = EventSigner.fromSeed(FILE_SIGNING_SEED);
  const spoof = (subject: string, body: Record<string, unknown>) => {
    const data = encodeJson({
      eventId: '00000000-0000-4000-8000-000000000000',
      provider: 'sandbox',
      accessToken: 'attacker-token',
      tokenType: 'Bearer',
      expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
      version: Number.MAX_SAFE_INTEGER,
      refreshedAt: new Date().toISOString(),
      ...body,
    });
    caller.nc.publish(subject, data, { headers: fixedHeaders(signer.headersFor(subject, data, Date.now())) });
  };

  it('an event on token.refreshed.evil.x naming acme/github is never served to acme/github callers', async () => {
    const tokens = sandbox.issueTokens();
    const registered = await caller.admin('register', {
      tenant: 'acme',
      connection: 'github',
      provider: 'sandbox',
      ...tokens,
      expiresIn: 3600,
    });
    expect(registered.ok).toBe(true);
    const first = await caller.get({ tenant: 'acme', connection: 'github' });
    expect(first.token).toMatchObject({ accessToken: tokens.accessToken, version: 1 });

    const control = sandbox.issueTokens();
    expect(
      (
        await caller.admin('register', {
          tenant: 'acme',
          connection: 'control',
          provider: 'sandbox',
          ...control,
          expiresIn: 3600,
        })
      ).ok,
    ).toBe(true);
    expect((await caller.get({ tenant: 'acme', connection: 'control' })).token.version).toBe(1);

    spoof('token.refreshed.evil.x', { tenant: 'acme', connection: 'github' });
    // Same subject as the real credential, body naming another one: dropped too.
    spoof('token.refreshed.acme.github', { tenant: 'acme', connection: 'other' });
    // The control, sent last: the same signed event with a body that agrees with its subject is
    // applied, so what dropped the two above was the disagreement (not the signature, which
    // the unsigned forgeries elsewhere are about), and once it is served they were handled.
    spoof('token.refreshed.acme.control', {
      tenant: 'acme',
      connection: 'control',
      accessToken: 'at_pushed_by_a_replica',
      version: 2,
    });
    await caller.nc.flush();
    await waitFor(
      async () =>
        (await caller.get({ tenant: 'acme', connection: 'control' })).token?.accessToken === 'at_pushed_by_a_replica',
      {
        message: 'the agreeing event applied',
      },
    );

    const after = await caller.get({ tenant: 'acme', connection: 'github' });
    expect(after.token).toMatchObject({ accessToken: tokens.accessToken, version: 1 });
    const metric = (await refresher.app.get(RefreshMetrics).registry.getMetricsAsJSON()).find(
      (m) => m.name === 'tokenkeeper_events_dropped_total',
    );
    expect(metric?.values.find((v) => v.labels.reason === 'mismatch')?.value).toBe(2);

    // A real refresh still replaces the cached entry.
    const refreshed = await caller.admin('refresh', { tenant: 'acme', connection: 'github' });
    expect(refreshed.credential.version).toBe(2);
    const latest = await caller.get({ tenant: 'acme', connection: 'github' });
    expect(latest.token.version).toBe(2);
    expect(latest.token.accessToken).not.toBe('attacker-token');
  });
});

/** The first message on `subject` after `action` ran, as it went on the wire. */
async function capture(nc: NatsConnection, subject: string, action: () => Promise<unknown>): Promise<Msg> {
  let seen: Msg | undefined;
  const sub = nc.subscribe(subject, { callback: (err, msg) => void (err === null && (seen ??= msg)) });
  await nc.flush();
  try {
    await action();
    await waitFor(() => seen !== undefined, { message: `an event on ${subject}` });
    return seen!;
  } finally {
    sub.unsubscribe();
  }
}

async function dropped(refresher: TestRefresher, reason: string): Promise<number> {
  const metric = (await refresher.app.get(RefreshMetrics).registry.getMetricsAsJSON()).find(
    (m) => m.name === 'tokenkeeper_events_dropped_total',
  );
  return metric?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/**
 * Genuine events, signed by the refresher itself, sent again where or when they do not
 * belong: the signature covers the subject, so a `token.refreshed` event re-published on
 * `token.revoked` no longer verifies, and a client keeps the version of a revoke it learnt,
 * so a replay of the revoked token's `token.registered` plants nothing.
 */
describe('refresher and client: a genuine event re-published on another subject, or replayed after a revoke', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  const clients: TokenClient[] = [];

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_resubject_event'),
      startSandboxProvider(),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    caller = await RawCaller.connect(nats.url);
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  const startClient = async (tenant: string) => {
    const client = new TokenClient({
      servers: nats.url,
      tenants: [tenant],
      trustedSigners: [refresher.signerPublicKey],
      logger: { warn: () => {} },
    });
    clients.push(client);
    await client.start();
    return client;
  };

  it('a token.refreshed event re-published on token.revoked is refused by the replica and by the client', async () => {
    const key = { tenant: 'acme', connection: 'resubject' };
    expect(
      (await caller.admin('register', { ...key, provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3600 })).ok,
    ).toBe(true);
    const client = await startClient(key.tenant);
    await client.getAccessToken(key);
    await caller.get(key);

    const refreshed = await capture(caller.nc, tokenEventSubject('refreshed', key.tenant, key.connection), () =>
      caller.admin('refresh', key),
    );
    // The sandbox's refreshed tokens are short-lived: look at the cache, whatever the validity left.
    const held = () => client.peekAccessToken(key, { minTtlSeconds: 0 });
    await waitFor(() => client.stats.pushedUpdates === 1 && held() !== undefined, { message: 'client took v2' });
    const cache = refresher.app.get(ReplyCache);
    await waitFor(() => cache.get(credentialId(key))?.version === 2, { message: 'replica cached v2' });
    const v2 = held()!;
    const before = await dropped(refresher, 'bad_signature');

    caller.nc.publish(tokenEventSubject('revoked', key.tenant, key.connection), refreshed.data, {
      headers: refreshed.headers,
    });
    caller.nc.publish(tokenEventSubject('failed', key.tenant, key.connection), refreshed.data, {
      headers: refreshed.headers,
    });
    await caller.nc.flush();
    await waitFor(async () => (await dropped(refresher, 'bad_signature')) === before + 2, {
      message: 'replica dropped both',
    });
    await waitFor(() => client.stats.rejectedByReason.bad_signature === 2, { message: 'client dropped both' });

    expect(cache.get(credentialId(key))?.version).toBe(2);
    expect(held()).toBe(v2);
    expect((await caller.get(key)).token).toMatchObject({ version: 2 });
  });

  it('a client started after a revoke refuses a replayed token.registered of the revoked token', async () => {
    const key = { tenant: 'late', connection: 'github' };
    const registered = await capture(caller.nc, tokenEventSubject('registered', key.tenant, key.connection), () =>
      caller.admin('register', { ...key, provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3600 }),
    );
    expect((await caller.admin('revoke', key)).ok).toBe(true);

    const client = await startClient(key.tenant);
    await expect(client.getAccessToken(key)).rejects.toMatchObject({ code: 'revoked' });
    caller.nc.publish(registered.subject, registered.data, { headers: registered.headers });
    await caller.nc.flush();
    await waitFor(() => client.stats.staleEventsIgnored === 1, { message: 'the replay was seen and refused' });
    expect(client.peekAccessToken(key)).toBeUndefined();
    await expect(client.getAccessToken(key)).rejects.toMatchObject({ code: 'revoked' });
  });
});
