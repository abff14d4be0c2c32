import pg from 'pg';
import { DataSource } from 'typeorm';
import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  startTcpProxy,
  waitFor,
  type NatsServerHandle,
  type SandboxOptions,
  type SandboxProvider,
  type TcpProxy,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

/**
 * Rotations: a refresh token the provider has rotated must never be lost, and
 * no old one presented again (rotation with reuse detection, grace 0 unless stated).
 */
interface World {
  nats: NatsServerHandle;
  db: TestDatabase;
  sandbox: SandboxProvider;
  refresher: TestRefresher;
  caller: RawCaller;
  sql: pg.Client;
  proxy?: TcpProxy;
}

let world: World | undefined;

async function setUp(opts: {
  sandbox?: SandboxOptions;
  env?: Record<string, string>;
  provider?: Record<string, unknown>;
  viaProxy?: boolean;
}): Promise<World> {
  const [nats, db, sandbox] = await Promise.all([
    startNatsServer(),
    createTestDatabase('tk_rotation'),
    startSandboxProvider({ rotateRefreshTokens: true, reuseGraceSeconds: 0, ...opts.sandbox }),
  ]);
  const proxy = opts.viaProxy ? await startTcpProxy() : undefined;
  const databaseUrl = proxy ? proxy.rewrite(db.url) : db.url;
  const refresher = await startTestRefresher(
    testEnv({ natsUrl: nats.url, databaseUrl, keys: testKeys() }, opts.env),
    sandboxProviders(sandbox, opts.provider),
  );
  const caller = await RawCaller.connect(nats.url);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  world = { nats, db, sandbox, refresher, caller, sql, proxy };
  return world;
}

afterEach(async () => {
  if (!world) return;
  const w = world;
  world = undefined;
  w.proxy?.resume();
  await w.sql.end().catch(() => undefined);
  await w.caller.close();
  await w.refresher.close();
  await Promise.all([w.sandbox.close(), w.nats.stop(), w.proxy?.close()]);
  await w.db.drop();
});

/** Registers `count` credentials holding a refresh token only: each is due at once. */
async function registerDue(w: World, count: number): Promise<string[]> {
  const initial: string[] = [];
  for (let i = 0; i < count; i++) {
    const refreshToken = w.sandbox.issueRefreshToken();
    initial.push(refreshToken);
    const reply = await w.caller.admin('register', {
      tenant: 'acme',
      connection: `c${String(i).padStart(2, '0')}`,
      provider: 'sandbox',
      refreshToken,
    });
    expect(reply.ok, JSON.stringify(reply.error)).toBe(true);
  }
  return initial;
}

async function rows(
  w: World,
): Promise<
  { connection: string; status: string; version: number; failures: number; last_error_message: string | null }[]
> {
  const result = await w.sql.query(
    `SELECT connection, status, version, failures, last_error_message FROM credentials ORDER BY connection`,
  );
  return result.rows;
}

describe('rotation safety', () => {
  it('item 1: keeps a rotated refresh token through a PostgreSQL outage and commits it afterwards', async () => {
    const w = await setUp({
      viaProxy: true,
      env: { LEASE_SECONDS: '10', REFRESH_TIMEOUT_MS: '5000', DATABASE_STATEMENT_TIMEOUT_MS: '4000' },
    });
    const COUNT = 12;
    // Item 2: the pool's sessions carry the configured timeouts.
    const [session] = await w.refresher.app
      .get(DataSource)
      .query(
        `SELECT current_setting('statement_timeout') AS statement, current_setting('idle_in_transaction_session_timeout') AS idle`,
      );
    expect(session).toEqual({ statement: '4s', idle: '15s' });
    // Token requests take 1.5 s, so the outage below starts while they are in flight.
    w.sandbox.setTokenDelay(1_500);
    await registerDue(w, COUNT);
    await waitFor(() => w.sandbox.stats.tokenRequests >= 4, { timeoutMs: 10_000, message: 'token requests in flight' });

    // The provider answers during the outage: every commit of those answers fails.
    const terminated = await w.sql.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'tokenkeeper-refresher%'`,
      [w.db.name],
    );
    expect(terminated.rowCount).toBeGreaterThan(0);
    w.proxy!.pause();
    await sleep(4_000);
    w.proxy!.resume();

    const done = await waitFor(
      async () => {
        const all = await rows(w);
        return all.length === COUNT && all.every((r) => r.version >= 2 || r.status === 'reauth_required') ? all : null;
      },
      { timeoutMs: 40_000, intervalMs: 200, message: 'every credential refreshed after the outage' },
    );
    expect(done.map((r) => r.status)).toEqual(Array(COUNT).fill('active'));
    expect(w.sandbox.stats.reuseDetected).toBe(0);
    expect(w.sandbox.everPresentedTwice()).toEqual([]);
    // The outage did hit commits of rotated tokens (the scenario happened).
    expect(w.refresher.logs.text()).toContain('commit of a rotated refresh token failed');
    // Let a late duplicate show itself, if there were one.
    await sleep(1_000);
    expect((await rows(w)).map((r) => r.status)).toEqual(Array(COUNT).fill('active'));
    expect(w.sandbox.stats.reuseDetected).toBe(0);
  }, 90_000);

  it('item 3: 40 due credentials, latency 3 s, maxConcurrency 2: no request cut off early, none presented twice', async () => {
    const w = await setUp({
      provider: { maxConcurrency: 2 },
      env: { LEASE_SECONDS: '8', REFRESH_TIMEOUT_MS: '6000' },
      // Long-lived tokens: one refresh round per credential in this test.
      sandbox: { accessTokenTtlSeconds: 600 },
    });
    const COUNT = 40;
    w.sandbox.setTokenDelay(3_000);
    await registerDue(w, COUNT);
    const done = await waitFor(
      async () => {
        const all = await rows(w);
        return all.length === COUNT && all.every((r) => r.version >= 2 || r.status === 'reauth_required') ? all : null;
      },
      { timeoutMs: 150_000, intervalMs: 500, message: 'every credential refreshed once' },
    );
    expect(done.filter((r) => r.status !== 'active')).toEqual([]);
    // Not one attempt failed: no timeout, no request given up.
    expect(done.filter((r) => r.failures > 0)).toEqual([]);
    const failedRecords = await w.sql.query(
      `SELECT count(*)::int AS n FROM outbox WHERE type IN ('failed', 'reauth_required')`,
    );
    expect(failedRecords.rows[0].n).toBe(0);
    expect(w.sandbox.stats.reuseDetected).toBe(0);
    expect(w.sandbox.everPresentedTwice()).toEqual([]);
    expect(w.sandbox.stats.refreshGrants).toBe(COUNT);
    expect(w.sandbox.stats.maxConcurrentTokenRequests).toBeLessThanOrEqual(2);
  }, 180_000);

  it('item 4: after an abandoned request the retry comes within the provider reuse grace, whatever the attempt count', async () => {
    const GRACE_SECONDS = 6;
    const w = await setUp({
      sandbox: { reuseGraceSeconds: GRACE_SECONDS, accessTokenTtlSeconds: 600 },
      env: { REFRESH_TIMEOUT_MS: '1500', BACKOFF_BASE_MS: '1000', BACKOFF_MAX_MS: '300000' },
    });
    const [initial] = await registerDue(w, 1);
    // Wait for the first refresh, then make the credential look like one with a long run of
    // failures (its backoff ceiling is minutes) that is due now.
    await waitFor(async () => (await rows(w))[0]?.version >= 2, { message: 'first refresh' });
    // The provider answers the next request only after the client gave up, and rotates anyway.
    w.sandbox.injectFault({ type: 'delay', ms: 2_500 });
    w.sandbox.resetStats();
    await w.sql.query(`UPDATE credentials SET status = 'failing', failures = 8, next_refresh_at = now()`);
    const after = await waitFor(
      async () => {
        const [row] = await rows(w);
        return row.status === 'active' && row.version >= 3 ? row : row.status === 'reauth_required' ? row : null;
      },
      { timeoutMs: 30_000, intervalMs: 100, message: 'the retry after the abandoned request' },
    );
    expect(after.status).toBe('active');
    expect(w.sandbox.stats.reuseDetected).toBe(0);
    expect(w.sandbox.stats.refreshGrants).toBe(2);
    expect(initial).toBeDefined();
  }, 60_000);
});
