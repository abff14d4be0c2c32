import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_GAUGE_TTL_MS } from '../src/observability/ops-metrics.js';
import { Sql } from './cluster.fixtures.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';
import { baseUrlOf, families, httpGet, sample } from './ops-support.js';

const TENANT = 'opsMetricsTenant';
const COUNT = 6;

/**
 * GET /metrics on a running refresher: every named series is exposed, and the values move
 * when refreshes, token.get calls and status changes happen. NATS runs without JetStream
 * here, so the outbox relay cannot publish and the backlog can only grow.
 */
describe('refresher ops: /metrics', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let sql: Sql;
  let base: string;
  const planted: string[] = [];

  const scrape = async () => {
    const answer = await httpGet(base, '/metrics');
    expect(answer.status).toBe(200);
    return answer.text;
  };

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_metrics'),
      startSandboxProvider({ accessTokenTtlSeconds: 3 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    base = baseUrlOf(refresher.app);
    caller = await RawCaller.connect(nats.url);
    sql = Sql.open(db.url);
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await sql?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('exposes every named series in the Prometheus text format, with the default process metrics', async () => {
    const answer = await httpGet(base, '/metrics');
    expect(answer.status).toBe(200);
    expect(answer.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const names = families(answer.text);
    for (const name of [
      'tokenkeeper_refreshes_total',
      'tokenkeeper_refresh_request_seconds',
      'tokenkeeper_refresh_lateness_seconds',
      'tokenkeeper_token_get_seconds',
      'tokenkeeper_token_get_total',
      'tokenkeeper_token_get_cache_hits_total',
      'tokenkeeper_credentials',
      'tokenkeeper_outbox_backlog',
      'tokenkeeper_outbox_oldest_pending_seconds',
      'tokenkeeper_nats_reconnects_total',
      'tokenkeeper_nats_connected',
      'tokenkeeper_refreshes_in_flight',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
    ]) {
      expect(names, name).toContain(name);
    }
    for (const status of ['active', 'failing', 'reauth_required', 'revoked']) {
      expect(sample(answer.text, 'tokenkeeper_credentials', { status })).toBe(0);
    }
    expect(sample(answer.text, 'tokenkeeper_outbox_backlog')).toBe(0);
    expect(sample(answer.text, 'tokenkeeper_outbox_oldest_pending_seconds')).toBe(0);
    expect(sample(answer.text, 'tokenkeeper_token_get_total', { outcome: 'hit' })).toBe(0);
  });

  it('moves the refresh, token.get, status and backlog series as work happens', async () => {
    for (let i = 0; i < COUNT; i++) {
      const tokens = sandbox.issueTokens();
      planted.push(tokens.accessToken, tokens.refreshToken);
      const reply = await caller.admin('register', {
        tenant: TENANT,
        connection: `conn${i}`,
        provider: 'sandbox',
        ...tokens,
        expiresIn: 3,
      });
      expect(reply.ok).toBe(true);
    }

    // Refreshes: 3-second tokens, refreshed ~1 s before expiry.
    await waitFor(
      async () =>
        (sample(await scrape(), 'tokenkeeper_refreshes_total', { provider: 'sandbox', outcome: 'success' }) ?? 0) >=
        COUNT,
      {
        timeoutMs: 15_000,
        message: `${COUNT} successful refreshes counted`,
      },
    );
    let text = await scrape();
    expect(sample(text, 'tokenkeeper_refresh_request_seconds_count', { provider: 'sandbox' })).toBeGreaterThanOrEqual(
      COUNT,
    );
    expect(sample(text, 'tokenkeeper_refresh_lateness_seconds_count')).toBeGreaterThanOrEqual(COUNT);

    // token.get: answers from memory are counted at scrape time; a miss is an error outcome.
    const hitsBefore = sample(text, 'tokenkeeper_token_get_total', { outcome: 'hit' })!;
    for (let i = 0; i < 20; i++) {
      expect((await caller.get({ tenant: TENANT, connection: 'conn0', minTtlSeconds: 0 })).ok).toBe(true);
    }
    const missing = await caller.get({ tenant: TENANT, connection: 'nosuch' });
    expect(missing.error.code).toBe('not_found');
    text = await scrape();
    expect(sample(text, 'tokenkeeper_token_get_total', { outcome: 'hit' })! - hitsBefore).toBeGreaterThanOrEqual(19);
    expect(sample(text, 'tokenkeeper_token_get_total', { outcome: 'error' })).toBe(1);
    expect(sample(text, 'tokenkeeper_token_get_seconds_count', { outcome: 'error' })).toBe(1);

    // Credentials by status: computed at scrape time (cached a few seconds).
    await waitFor(async () => sample(await scrape(), 'tokenkeeper_credentials', { status: 'active' }) === COUNT, {
      timeoutMs: 10_000,
      message: `tokenkeeper_credentials{status="active"} = ${COUNT}`,
    });
    // The provider refuses one refresh token for good: that credential needs re-authorization.
    sandbox.injectFault({ type: 'oauth_error', error: 'invalid_grant' }, 1);
    await waitFor(
      async () => (sample(await scrape(), 'tokenkeeper_credentials', { status: 'reauth_required' }) ?? 0) >= 1,
      {
        timeoutMs: 15_000,
        message: 'tokenkeeper_credentials{status="reauth_required"} >= 1',
      },
    );
    text = await scrape();
    expect(
      sample(text, 'tokenkeeper_refreshes_total', { provider: 'sandbox', outcome: 'invalid_grant' }),
    ).toBeGreaterThanOrEqual(1);
    const [stored] = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM credentials WHERE status = 'reauth_required'`,
    );
    expect(stored.n).toBe(1);
    expect(sample(text, 'tokenkeeper_credentials', { status: 'reauth_required' })).toBe(1);
    expect(sample(text, 'tokenkeeper_credentials', { status: 'active' })).toBe(COUNT - 1);

    // Outbox backlog: every change wrote audit records that nothing could publish.
    const backlog = sample(text, 'tokenkeeper_outbox_backlog')!;
    const [pending] = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL`,
    );
    expect(backlog).toBeGreaterThanOrEqual(COUNT * 2); // registered + refresh_started + refreshed …
    expect(backlog).toBeLessThanOrEqual(pending.n);
    // Its age is the oldest pending record's: one an hour old (nothing can publish it here).
    await sql.query(
      `INSERT INTO outbox (event_id, tenant, connection, type, subject, payload, created_at)
       VALUES (gen_random_uuid(), 'ops', 'aged', 'refreshed', 'audit.token.refreshed.ops.aged', '{}', now() - interval '1 hour')`,
    );
    const age = await waitFor(
      async () => {
        const value = sample(await scrape(), 'tokenkeeper_outbox_oldest_pending_seconds')!;
        return value >= 3_600 ? value : undefined;
      },
      { timeoutMs: DB_GAUGE_TTL_MS + 10_000, message: 'the oldest pending age gauge shows the hour-old record' },
    );
    expect(age).toBeLessThan(3_600 + 60);
    await waitFor(async () => sample(await scrape(), 'tokenkeeper_outbox_backlog')! > backlog, {
      timeoutMs: 15_000,
      message: 'the outbox backlog gauge grows with further refreshes',
    });
  });

  it('carries no tenant, connection or token in any label or value', async () => {
    const text = await scrape();
    expect(text).not.toContain(TENANT);
    expect(text).not.toContain('conn0');
    for (const secret of [...planted, 'sandbox-secret']) expect(text).not.toContain(secret);
  });
});
