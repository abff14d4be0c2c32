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
import { callApi, EventLog, providersFor, type Key } from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * `rejectedVersion`: N consumers reporting the same rejected token cause one refresh, in
 * one replica and across replicas; a report about a version already replaced causes none.
 */
describe('refresher: token.get with rejectedVersion', () => {
  const CALLERS = 50;
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let env: Record<string, string>;
  let a: TestRefresher;
  let b: TestRefresher | undefined;
  let caller: RawCaller;
  let events: EventLog;

  // Round after round of rejected versions of one credential, each to be replaced at once:
  // no on-demand budget here (refresh-budgets.e2e-spec.ts covers it).
  const providers = () => providersFor({ sandbox: { sandbox, onDemandCooldownSeconds: 0 } });

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_rejected'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    // A slow provider keeps the refresh in flight while all the callers arrive.
    sandbox.setTokenDelay(300);
    env = testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() });
    a = await startTestRefresher({ ...env, REPLICA_ID: 'replica-a' }, providers());
    caller = await RawCaller.connect(nats.url);
    events = new EventLog(caller.nc);
  });

  afterAll(async () => {
    events?.close();
    await caller?.close();
    await b?.close();
    await a?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  async function register(key: Key) {
    const tokens = sandbox.issueTokens();
    const reg = await caller.admin('register', {
      ...key,
      provider: 'sandbox',
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      expiresIn: 3600,
    });
    expect(reg).toMatchObject({ ok: true, credential: { version: 1 } });
    return tokens;
  }

  function getAll(key: Key, rejectedVersion: number) {
    return Promise.all(Array.from({ length: CALLERS }, () => caller.get({ ...key, rejectedVersion })));
  }

  /** The same token for everyone, of the expected version; returns it. */
  function expectOneToken(replies: any[], version: number) {
    for (const reply of replies) expect(reply).toMatchObject({ ok: true, token: { version } });
    const distinct = new Set(replies.map((r) => r.token.accessToken));
    expect(distinct.size).toBe(1);
    return replies[0].token;
  }

  /** token.get requests that took the slow path (a rejectedVersion always does), per replica. */
  async function slowGets(refresher: TestRefresher): Promise<number> {
    const text = await refresher.app.get(RefreshMetrics).registry.metrics();
    const line = text.split('\n').find((l) => l.startsWith('tokenkeeper_token_get_seconds_count{outcome="ok"}'));
    return line ? Number(line.split(' ').at(-1)) : 0;
  }

  it(`${CALLERS} concurrent reports of the current version: one refresh; reports of the old one: none`, async () => {
    const key = { tenant: 'acme', connection: 'single' };
    const tokens = await register(key);
    const before = sandbox.stats.refreshGrants;

    const first = await getAll(key, 1);
    expect(sandbox.stats.refreshGrants - before).toBe(1);
    const v2 = expectOneToken(first, 2);
    expect(v2.accessToken).not.toBe(tokens.accessToken);
    expect(await callApi(sandbox, v2.accessToken)).toBe(200);
    await waitFor(() => events.of('refreshed', key.tenant, key.connection).length === 1);

    const second = await getAll(key, 1);
    expect(sandbox.stats.refreshGrants - before).toBe(1);
    expect(expectOneToken(second, 2)).toEqual(v2);
    // Also with a fresh-token requirement on top: still the current version, no refresh.
    expect(await caller.get({ ...key, rejectedVersion: 1, minTtlSeconds: 60 })).toEqual({ ok: true, token: v2 });
    expect(sandbox.stats.refreshGrants - before).toBe(1);
    expect(events.of('refreshed', key.tenant, key.connection)).toHaveLength(1);
    expect(sandbox.everPresentedTwice()).toEqual([]);
  });

  it('a rejectedVersion that never existed names nothing to refresh: the current token, no refresh', async () => {
    const key = { tenant: 'acme', connection: 'future' };
    await register(key);
    const before = sandbox.stats.refreshGrants;
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => caller.get({ ...key, rejectedVersion: 1_000_000 })),
    );
    expect(replies.every((r) => r.ok && r.token.version === 1)).toBe(true);
    expect(sandbox.stats.refreshGrants - before).toBe(0);
  });

  it('an expired token reported with an older rejectedVersion is still refreshed', async () => {
    const key = { tenant: 'acme', connection: 'expired-old-report' };
    const expired = () => {
      const { accessToken, refreshToken } = sandbox.issueTokens();
      return {
        ...key,
        provider: 'sandbox',
        accessToken,
        refreshToken,
        expiresAt: new Date(Date.now() - 1_000).toISOString(),
      };
    };
    expect((await caller.admin('register', expired())).ok).toBe(true);
    expect((await caller.admin('register', expired())).ok).toBe(true);
    // Version 2 is stored and expired; a caller reports version 1 (long replaced) as rejected.
    const reply = await caller.get({ ...key, rejectedVersion: 1 });
    expect(reply.ok, JSON.stringify(reply)).toBe(true);
    expect(reply.token.version).toBeGreaterThanOrEqual(3);
    expect(Date.parse(reply.token.expiresAt)).toBeGreaterThan(Date.now());
  });

  it(`two replicas sharing ${CALLERS} reports: still one refresh per rejected version`, async () => {
    b = await startTestRefresher({ ...env, REPLICA_ID: 'replica-b' }, providers());
    const key = { tenant: 'acme', connection: 'replicated' };
    await register(key);
    const before = sandbox.stats.refreshGrants;
    const servedBefore = [await slowGets(a), await slowGets(b)];

    let current = 1;
    let token: any;
    for (let round = 0; round < 3; round++) {
      const replies = await getAll(key, current);
      expect(sandbox.stats.refreshGrants - before, `round ${round}`).toBe(round + 1);
      token = expectOneToken(replies, current + 1);
      current += 1;
      // Stale reports right after: answered from the new version by both replicas.
      const stale = await getAll(key, current - 1);
      expect(expectOneToken(stale, current)).toEqual(token);
      expect(sandbox.stats.refreshGrants - before, `round ${round}, stale reports`).toBe(round + 1);
    }
    expect(await callApi(sandbox, token.accessToken)).toBe(200);

    // Both replicas answered their share of the reports (queue group), so the single
    // refresh really was coordinated across them.
    const served = [(await slowGets(a)) - servedBefore[0]!, (await slowGets(b)) - servedBefore[1]!];
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
    await waitFor(() => events.of('refreshed', key.tenant, key.connection).length === 3);
    expect(events.of('refreshed', key.tenant, key.connection).map((e) => e.data.version)).toEqual([2, 3, 4]);
    expect(sandbox.everPresentedTwice()).toEqual([]);
    expect(sandbox.stats.reuseDetected).toBe(0);
  });
});
