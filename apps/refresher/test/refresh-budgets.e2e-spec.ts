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
import { Sql } from './cluster.fixtures.js';
import { providersFor, type Key } from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * One tenant cannot starve the others at a shared provider: a consumer looping
 * `rejectedVersion` of the current version is held to the credential's on-demand budget
 * (`rate_limited` with `retryAfterSeconds`), and a tenant's storm of admin refreshes gets
 * its share of the provider's slots, no more, while another tenant's credentials come due.
 *
 * The loop runs for 10 s against a 2 s cooldown rather than 30 s against the default 30 s:
 * the ratio of the two is what bounds the provider calls, and half a minute per case would
 * double this suite's time. The budget's default itself is pinned by a provider entry that
 * leaves it unset (`sandbox-default`).
 */
describe('refresher: refresh budgets and fair shares at a shared provider', () => {
  const COOLDOWN_SECONDS = 2;
  const LOOP_MS = 10_000;
  /** The sandbox answers each token request after this: slots stay busy while work queues. */
  const PROVIDER_DELAY_MS = 200;
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let sql: Sql;
  let env: Record<string, string>;
  let one: TestRefresher;
  let two: TestRefresher | undefined;
  let caller: RawCaller;
  const providers = () =>
    providersFor({
      sandbox: { sandbox, maxConcurrency: 2, onDemandCooldownSeconds: COOLDOWN_SECONDS },
      'sandbox-default': { sandbox, maxConcurrency: 2, threshold: 0.99 },
    });

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_budgets'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    sandbox.setTokenDelay(PROVIDER_DELAY_MS);
    sql = Sql.open(db.url);
    env = testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() });
    one = await startTestRefresher({ ...env, REPLICA_ID: 'replica-one' }, providers());
    caller = await RawCaller.connect(nats.url);
  });

  afterAll(async () => {
    await caller?.close();
    await two?.close();
    await one?.close();
    await sql?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  async function register(key: Key, provider: string, expiresIn = 3600) {
    const tokens = sandbox.issueTokens();
    const reply = await caller.admin('register', {
      ...key,
      provider,
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn,
    });
    expect(reply.ok, JSON.stringify(reply)).toBe(true);
    return reply.credential;
  }

  /**
   * `count` credentials of `tenant` whose tokens come due one after another between about
   * 2 s and 2 s + `spreadMs` from now; returns their due times as stored.
   */
  async function comingDue(tenant: string, count: number, spreadMs: number): Promise<Map<string, number>> {
    for (let i = 0; i < count; i++) {
      // Due at 0.8 × the lifetime (less a jitter of up to 5 %).
      const lifetime = (2_500 + (spreadMs * i) / count) / 0.8 / 1000;
      await register({ tenant, connection: `due-${i}` }, 'sandbox', Math.round(lifetime * 10) / 10);
    }
    const rows = await sql.query<{ connection: string; due: Date }>(
      `SELECT connection, next_refresh_at AS due FROM credentials WHERE tenant = $1`,
      [tenant],
    );
    return new Map(rows.map((r) => [r.connection, r.due.getTime()]));
  }

  /** From each credential's due time to the commit of its refresh (the row's last refresh at the provider). */
  async function lateness(tenant: string, due: Map<string, number>): Promise<number[]> {
    await waitFor(
      async () =>
        (await sql.query(`SELECT 1 FROM credentials WHERE tenant = $1 AND version < 2`, [tenant])).length === 0,
      {
        timeoutMs: 30_000,
        message: `every credential of ${tenant} refreshed`,
      },
    );
    const rows = await sql.query<{ connection: string; at: Date }>(
      `SELECT connection, last_refreshed_at AS at FROM credentials WHERE tenant = $1`,
      [tenant],
    );
    return rows.map((r) => r.at.getTime() - due.get(r.connection)!).sort((x, y) => x - y);
  }

  const p99 = (sorted: number[]) => sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)];

  async function rateLimitedCount(refresher: TestRefresher): Promise<number> {
    const text = await refresher.app.get(RefreshMetrics).registry.metrics();
    return text
      .split('\n')
      .filter((l) => l.startsWith('tokenkeeper_on_demand_rate_limited_total{'))
      .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
  }

  it(`a tenant looping rejectedVersion of the current version for ${LOOP_MS / 1000} s: a handful of provider calls, rate_limited with retryAfterSeconds, another tenant's due refreshes on time`, async () => {
    const looped = { tenant: 'storm', connection: 'api' };
    await register(looped, 'sandbox');
    const due = await comingDue('steady', 20, LOOP_MS - 3_000);
    const before = sandbox.stats.refreshGrants;

    let current = 1;
    const replies = { ok: 0, rateLimited: 0, other: [] as string[] };
    const retryAfter = new Set<number>();
    const until = Date.now() + LOOP_MS;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < until) {
          const reply = await caller.get({ ...looped, rejectedVersion: current });
          if (reply.ok) {
            replies.ok++;
            current = Math.max(current, reply.token.version);
          } else if (reply.error.code === 'rate_limited') {
            replies.rateLimited++;
            retryAfter.add(reply.error.retryAfterSeconds);
          } else replies.other.push(reply.error.code);
        }
      }),
    );

    const late = await lateness('steady', due);
    const steadyRefreshes = late.length;
    const [row] = await sql.query<{ version: number }>(`SELECT version FROM credentials WHERE tenant = 'storm'`);
    const stormCalls = sandbox.stats.refreshGrants - before - steadyRefreshes;
    const summary = JSON.stringify({
      replies,
      retryAfter: [...retryAfter],
      stormCalls,
      version: row.version,
      lateMs: late,
    });
    expect(replies.other, summary).toEqual([]);
    // One refresh per cooldown at most: LOOP_MS / COOLDOWN (5) and the first.
    expect(stormCalls, summary).toBeLessThanOrEqual(LOOP_MS / 1000 / COOLDOWN_SECONDS + 1);
    expect(row.version - 1, summary).toBe(stormCalls);
    expect(replies.rateLimited, summary).toBeGreaterThan(replies.ok);
    for (const seconds of retryAfter) {
      expect(Number.isInteger(seconds), summary).toBe(true);
      expect(seconds, summary).toBeGreaterThanOrEqual(1);
      expect(seconds, summary).toBeLessThanOrEqual(COOLDOWN_SECONDS);
    }
    expect(p99(late), summary).toBeLessThan(1_000);
  });

  it("a tenant's storm of admin refreshes takes its share of the provider's slots: another tenant's due refreshes stay on time", async () => {
    const storm = Array.from({ length: 16 }, (_, i) => ({ tenant: 'admins', connection: `c${i}` }));
    for (const key of storm) await register(key, 'sandbox');
    const due = await comingDue('quiet', 20, 5_000);
    const until = Date.now() + 8_000;
    let refreshed = 0;
    const failures: string[] = [];
    // Sixteen loops on a provider with two slots of 200 ms each: a backlog of about
    // fourteen of this tenant's requests at every moment, 1.4 s of work ahead of anyone
    // queued behind it in arrival order.
    await Promise.all(
      storm.map(async (key) => {
        while (Date.now() < until) {
          const reply = await caller.admin('refresh', key, 20_000);
          if (reply.ok) refreshed++;
          else failures.push(reply.error.code);
        }
      }),
    );
    const late = await lateness('quiet', due);
    const summary = JSON.stringify({ refreshed, failures, lateMs: late });
    // Not budgeted: every admin refresh went to the provider.
    expect(failures, summary).toEqual([]);
    expect(refreshed, summary).toBeGreaterThan(storm.length * 2);
    expect(p99(late), summary).toBeLessThan(1_000);
  });

  it('registration does not start a cooldown; a refresh at the provider does (default 30 s); admin.refresh is not budgeted', async () => {
    const key = { tenant: 'budget', connection: 'registered' };
    await register(key, 'sandbox-default');
    const before = sandbox.stats.refreshGrants;
    const first = await caller.get({ ...key, rejectedVersion: 1 });
    expect(first, JSON.stringify(first)).toMatchObject({ ok: true, token: { version: 2 } });
    expect(sandbox.stats.refreshGrants - before).toBe(1);

    const limited = await caller.get({ ...key, rejectedVersion: 2 });
    expect(limited, JSON.stringify(limited)).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    expect(limited.error.retryAfterSeconds).toBeGreaterThanOrEqual(25);
    expect(limited.error.retryAfterSeconds).toBeLessThanOrEqual(30);
    expect(sandbox.stats.refreshGrants - before).toBe(1);

    const admin = await caller.admin('refresh', key);
    expect(admin, JSON.stringify(admin)).toMatchObject({ ok: true, credential: { version: 3 } });
    expect(sandbox.stats.refreshGrants - before).toBe(2);
  });

  it('two replicas on one database share the cooldown: the last refresh at the provider is read from the row', async () => {
    const key = { tenant: 'budget', connection: 'shared' };
    await register(key, 'sandbox-default');
    expect(await caller.get({ ...key, rejectedVersion: 1 })).toMatchObject({ ok: true, token: { version: 2 } });
    two = await startTestRefresher({ ...env, REPLICA_ID: 'replica-two' }, providers());
    const before = sandbox.stats.refreshGrants;
    const [oneBefore, twoBefore] = [await rateLimitedCount(one), await rateLimitedCount(two)];
    const replies = await Promise.all(Array.from({ length: 24 }, () => caller.get({ ...key, rejectedVersion: 2 })));
    for (const reply of replies)
      expect(reply, JSON.stringify(reply)).toMatchObject({ ok: false, error: { code: 'rate_limited' } });
    expect(sandbox.stats.refreshGrants - before).toBe(0);
    // Both replicas answered some (the queue group spreads requests): the one that did not
    // refresh held the budget too, with nothing of it in its memory.
    expect(await rateLimitedCount(one)).toBeGreaterThan(oneBefore);
    expect(await rateLimitedCount(two)).toBeGreaterThan(twoBefore);
  });

  it('a minTtlSeconds the current token cannot meet, within the cooldown: the valid current token, no provider call', async () => {
    const key = { tenant: 'budget', connection: 'min-ttl' };
    await register(key, 'sandbox-default');
    // The refresh at the provider starts the cooldown and brings a 10 s token (due at 8 s).
    sandbox.setAccessTokenTtl(10);
    try {
      const refreshed = await caller.get({ ...key, rejectedVersion: 1 });
      expect(refreshed, JSON.stringify(refreshed)).toMatchObject({ ok: true, token: { version: 2 } });
      // Past half its lifetime, a token no longer meets a minTtl of 8 s (capped at 5 s).
      await new Promise((resolve) => setTimeout(resolve, 5_500));
      const before = sandbox.stats.refreshGrants;
      const reply = await caller.get({ ...key, minTtlSeconds: 8 });
      expect(reply, JSON.stringify(reply)).toEqual({ ok: true, token: refreshed.token });
      expect(Date.parse(reply.token.expiresAt) - Date.now()).toBeLessThan(5_000);
      expect(sandbox.stats.refreshGrants - before).toBe(0);
    } finally {
      sandbox.setAccessTokenTtl(3600);
    }
  });
});
