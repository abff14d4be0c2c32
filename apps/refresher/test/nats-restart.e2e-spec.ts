import type { NatsConnection } from '@nats-io/transport-node';
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NATS_CONNECTION } from '../src/nats/nats-connection.js';
import { auditRecord } from '../src/persistence/audit-record.js';
import { parseProvidersDocument } from '../src/providers/providers-file.loader.js';
import type { ProviderConfig } from '../src/providers/provider.types.js';
import { UndiciTokenEndpoint } from '../src/providers/token-endpoint.client.js';
import { scheduleRefresh } from '../src/refresh/refresh-policy.js';
import { openRepository, Sql } from './cluster.fixtures.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

const TENANT = 'natsrestart';
const SHORT = ['s0', 's1', 's2', 's3', 's4'];
const MIN_OUTAGE_MS = 2_000;

/**
 * The wire contract and operations: the refresher outlives a NATS restart. While NATS is down it keeps
 * refreshing into the database; once the server is back (same port) it reconnects on its
 * own, answers token.get with what the database holds (not with what it had cached before
 * the outage) and keeps publishing events.
 */
describe('refresher across a NATS server restart', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let longSandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let sql: Sql;
  let long: Map<string, ProviderConfig>;
  const keys = testKeys();
  const refreshedEvents: { at: number; data: any }[] = [];

  beforeAll(async () => {
    [nats, db, sandbox, longSandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_natsrestart'),
      // Short tokens: refreshed every ~1.5 s by the scheduler.
      startSandboxProvider({ accessTokenTtlSeconds: 3 }),
      // Hour-long tokens: nothing is due during the test, so only another replica changes them.
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    long = parseProvidersDocument(
      JSON.stringify({
        providers: {
          'sandbox-long': {
            tokenUrl: longSandbox.tokenUrl,
            clientId: 'sandbox-client',
            clientSecret: 'sandbox-secret',
            authMethod: 'client_secret_basic',
            grant: 'refresh_token',
          },
        },
      }),
      'json',
      {},
    );
    const providers = new Map([...sandboxProviders(sandbox), ...long]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys }, { REPLICA_ID: 'solo' }),
      providers,
    );
    caller = await RawCaller.connect(nats.url);
    caller.nc.subscribe(`token.refreshed.${TENANT}.*`, {
      callback: (_e, m) => {
        refreshedEvents.push({ at: Date.now(), data: m.json() });
      },
    });
    sql = Sql.open(db.url);
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), longSandbox?.close(), nats?.stop(), sql?.close()]);
    await db?.drop();
  });

  const versions = async (): Promise<Map<string, number>> =>
    new Map((await sql.rows(TENANT)).map((r) => [r.connection, r.version]));

  it('reconnects by itself, refreshed through the outage, and serves the current version afterwards', async () => {
    for (const connection of SHORT) {
      const reply = await caller.admin('register', {
        tenant: TENANT,
        connection,
        provider: 'sandbox',
        refreshToken: sandbox.issueRefreshToken(),
      });
      expect(reply.ok).toBe(true);
    }
    const longTokens = longSandbox.issueTokens();
    await caller.admin('register', {
      tenant: TENANT,
      connection: 'stale',
      provider: 'sandbox-long',
      accessToken: longTokens.accessToken,
      refreshToken: longTokens.refreshToken,
      expiresIn: 3600,
    });
    for (const connection of SHORT) expect((await caller.get({ tenant: TENANT, connection })).ok).toBe(true);
    // The replica now has 'stale' version 1 in its cache, good for an hour.
    const before = await caller.get({ tenant: TENANT, connection: 'stale' });
    expect(before.token).toMatchObject({ version: 1, accessToken: longTokens.accessToken });
    await waitFor(() => refreshedEvents.length >= SHORT.length, { message: 'refreshed events before the outage' });

    const nc = refresher.app.get<NatsConnection>(NATS_CONNECTION);
    const statuses: string[] = [];
    void (async () => {
      for await (const s of nc.status()) statuses.push(s.type);
    })();

    // --- NATS goes away.
    await nats.stop();
    expect(nats.pid).toBeUndefined();
    const atStop = await versions();
    await waitFor(() => statuses.includes('disconnect'), { message: 'the refresher to notice the disconnect' });

    // Meanwhile another replica (its own pool, the real token endpoint client) refreshes
    // 'stale'; its event is lost with NATS down, so our replica hears nothing of it.
    const other = await openRepository(db.url, keys);
    const endpoint = new UndiciTokenEndpoint({ timeoutMs: 2_000 });
    let otherAccessToken: string;
    try {
      const key = { tenant: TENANT, connection: 'stale' };
      const leased = await other.repository.tryLease(key, 'other-replica', 10, 1);
      expect(leased).not.toBeNull();
      const result = await endpoint.requestToken({
        provider: long.get('sandbox-long')!,
        refreshToken: leased!.credential.refreshToken,
      });
      if (!result.ok) throw new Error(`other replica's refresh failed: ${result.failure.message}`);
      const schedule = scheduleRefresh({
        issuedAt: result.token.requestedAt,
        lifetimeSeconds: result.token.expiresInSeconds,
        threshold: 0.8,
        minMarginSeconds: 2,
        random: 0,
      });
      const committed = await other.repository.commitRefresh(
        key,
        leased!.lease,
        {
          accessToken: result.token.accessToken,
          refreshToken: result.token.refreshToken,
          tokenType: result.token.tokenType,
          issuedAt: result.token.requestedAt,
          expiresAt: schedule.expiresAt,
          nextRefreshAt: schedule.nextRefreshAt,
        },
        [auditRecord('refreshed', leased!.credential, 'other-replica')],
      );
      expect(committed?.credential.version).toBe(2);
      otherAccessToken = result.token.accessToken.reveal();
    } finally {
      await endpoint.close();
      await other.close();
    }

    // The scheduler keeps refreshing into the database without NATS: two rounds at least.
    await sleep(MIN_OUTAGE_MS);
    await waitFor(
      async () => {
        const now = await versions();
        return SHORT.every((c) => now.get(c)! - atStop.get(c)! >= 2);
      },
      { timeoutMs: 10_000, intervalMs: 100, message: 'two refreshes of every short credential while NATS is down' },
    );
    expect(statuses).not.toContain('reconnect');

    // --- NATS comes back on the same port; the app is not restarted.
    await nats.restart();
    const restartedAt = Date.now();
    await waitFor(() => statuses.includes('reconnect'), { timeoutMs: 10_000, message: 'the refresher to reconnect' });
    expect(nc.isClosed()).toBe(false);
    const fresh = await waitFor(
      async () => {
        const reply = await caller.get({ tenant: TENANT, connection: 'stale' }, 1_000);
        return reply.ok ? reply : undefined;
      },
      { timeoutMs: 10_000, message: 'token.get to be answered after the restart' },
    );

    // Not the version cached before the outage: the one the other replica stored meanwhile.
    expect(fresh.token).toMatchObject({ version: 2, accessToken: otherAccessToken! });
    // The short ones: at least what the database holds right before the question.
    for (const connection of SHORT) {
      const stored = (await versions()).get(connection)!;
      const reply = await caller.get({ tenant: TENANT, connection });
      expect(reply.ok, `token.get ${connection}`).toBe(true);
      expect(reply.token.version, `version of ${connection}`).toBeGreaterThanOrEqual(stored);
      expect(Date.parse(reply.token.expiresAt)).toBeGreaterThan(Date.now());
    }

    // Refreshes keep publishing: new versions are announced after the reconnect.
    const afterRestart = await versions();
    for (const connection of SHORT) {
      await waitFor(
        () =>
          refreshedEvents.find(
            (e) =>
              e.at >= restartedAt && e.data.connection === connection && e.data.version > afterRestart.get(connection)!,
          ),
        { timeoutMs: 8_000, message: `a refreshed event for ${connection} after the reconnect` },
      );
    }
    expect(sandbox.everPresentedTwice()).toEqual([]);
    expect(longSandbox.everPresentedTwice()).toEqual([]);
  });
});
