import { encodeJson, EventSigner } from '@tokenkeeper/contracts';
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
    caller.nc.publish(subject, data, { headers: fixedHeaders(signer.headersFor(data)) });
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
