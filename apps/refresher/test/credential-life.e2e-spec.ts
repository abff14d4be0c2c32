import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sql } from './cluster.fixtures.js';
import { describeCredential, EventLog, providersFor } from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * A credential's life beyond its current token: a failing credential that works again says
 * so once; a token without a known expiry is still refreshed (keep-alive); a refresh token's
 * absolute expiry is kept, shown, listed and warned of once before it comes.
 */
describe('refresher: recovered, keep-alive, refresh-token expiry', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let plain: SandboxProvider;
  let noExpiry: SandboxProvider;
  let grantEnds: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let events: EventLog;
  let sql: Sql;

  beforeAll(async () => {
    [nats, db, plain, noExpiry, grantEnds] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_life'),
      startSandboxProvider({ accessTokenTtlSeconds: 2 }),
      startSandboxProvider({ omitExpiresIn: true }),
      startSandboxProvider({ accessTokenTtlSeconds: 3_600, refreshTokenExpiresInSeconds: 5 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      providersFor({
        plain: { sandbox: plain },
        idle: { sandbox: noExpiry, keepAliveSeconds: 3 },
        ends: { sandbox: grantEnds, expiryWarningDays: 1 },
        registered: { sandbox: plain, expiryWarningDays: 7 },
      }),
    );
    caller = await RawCaller.connect(nats.url);
    events = new EventLog(caller.nc);
    sql = Sql.open(db.url);
  });

  afterAll(async () => {
    events?.close();
    await caller?.close();
    await refresher?.close();
    await sql?.close();
    await Promise.all([plain?.close(), noExpiry?.close(), grantEnds?.close(), nats?.stop()]);
    await db?.drop();
  });

  const outboxTypes = async (tenant: string, type: string) =>
    sql.query<{ payload: any }>(`SELECT payload FROM outbox WHERE tenant = $1 AND type = $2`, [tenant, type]);

  it('a failing credential that refreshes again: exactly one token.recovered and one recovered record', async () => {
    const key = { tenant: 'life', connection: 'recovers' };
    const tokens = plain.issueTokens();
    plain.setFault({ type: 'status', status: 503 });
    const reg = await caller.admin('register', { ...key, provider: 'plain', refreshToken: tokens.refreshToken });
    expect(reg.ok).toBe(true);
    await waitFor(async () => (await describeCredential(caller, key)).failures >= 2, { timeoutMs: 15_000 });
    const failing = await describeCredential(caller, key);
    expect(failing.status).toBe('failing');
    plain.clearFaults();

    await waitFor(() => events.of('recovered', key.tenant, key.connection).length > 0, { timeoutMs: 15_000 });
    // Later refreshes of the now active credential announce nothing more.
    await waitFor(() => events.of('refreshed', key.tenant, key.connection).length >= 3, { timeoutMs: 15_000 });
    const recovered = events.of('recovered', key.tenant, key.connection);
    expect(recovered).toHaveLength(1);
    const firstRefreshed = events.of('refreshed', key.tenant, key.connection)[0]!;
    expect(recovered[0]!.data).toEqual({
      eventId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      tenant: key.tenant,
      connection: key.connection,
      provider: 'plain',
      version: firstRefreshed.data.version,
      failedSince: expect.any(String),
      attempts: expect.any(Number),
    });
    expect(recovered[0]!.data.attempts).toBeGreaterThanOrEqual(2);
    expect(Date.parse(recovered[0]!.data.failedSince)).toBeLessThanOrEqual(Date.parse(failing.updatedAt));
    expect(recovered[0]!.data.eventId).not.toBe(firstRefreshed.data.eventId);

    const records = await outboxTypes(key.tenant, 'recovered');
    expect(records).toHaveLength(1);
    expect(records[0]!.payload).toMatchObject({ type: 'recovered', eventId: recovered[0]!.data.eventId });
    // The refreshed event still carries its own record's id.
    const refreshedIds = (await outboxTypes(key.tenant, 'refreshed')).map((r) => r.payload.eventId);
    expect(refreshedIds).toContain(firstRefreshed.data.eventId);
    expect((await describeCredential(caller, key)).status).toBe('active');
  });

  it('a token response without expires_in is refreshed every keepAliveSeconds; a known grant end is warned of once', async () => {
    const key = { tenant: 'keepalive', connection: 'idle' };
    const tokens = noExpiry.issueTokens();
    // A grant ending within the (default, 7-day) warning window: warned of once, not at every refresh.
    const endsAt = new Date(Date.now() + 86_400_000).toISOString();
    await caller.admin('register', {
      ...key,
      provider: 'idle',
      refreshToken: tokens.refreshToken,
      refreshTokenExpiresAt: endsAt,
    });
    await waitFor(() => events.of('refreshed', key.tenant, key.connection).length >= 4, { timeoutMs: 20_000 });
    expect(events.of('expiring', key.tenant, key.connection).map((e) => e.data.refreshTokenExpiresAt)).toEqual([
      endsAt,
    ]);
    const refreshed = events.of('refreshed', key.tenant, key.connection);
    expect(refreshed[0]!.data.expiresAt).toBeNull();
    expect(refreshed.map((e) => e.data.version)).toEqual(refreshed.map((_, i) => refreshed[0]!.data.version + i));
    // Each refresh schedules the next one keepAliveSeconds (less at most 5 % jitter) after it.
    const [row] = await sql.query<{ period: number }>(
      `SELECT extract(epoch FROM next_refresh_at - issued_at)::float8 AS period FROM credentials
       WHERE tenant = $1 AND connection = $2`,
      [key.tenant, key.connection],
    );
    expect(row!.period).toBeGreaterThanOrEqual(3 * 0.95 - 0.001);
    expect(row!.period).toBeLessThanOrEqual(3);
    // Never more often than that, however loaded the machine (a late refresh only lowers the
    // count); one refresh of tolerance for events that arrive bunched.
    const window = refreshed.at(-1)!.at - refreshed[0]!.at;
    expect(refreshed.length - 1).toBeLessThanOrEqual(Math.floor(window / 2_850) + 1);
    const described = await describeCredential(caller, key);
    expect(described.expiresAt).toBeNull();
    expect(described.nextRefreshAt).not.toBeNull();
  });

  it('refresh_token_expires_in is stored, shown by describe and warned of once', async () => {
    const key = { tenant: 'ending', connection: 'grant' };
    const tokens = grantEnds.issueTokens();
    const sent = Date.now();
    await caller.admin('register', { ...key, provider: 'ends', refreshToken: tokens.refreshToken });
    await waitFor(() => events.of('expiring', key.tenant, key.connection).length > 0, { timeoutMs: 10_000 });
    await sleep(2_000);
    const expiring = events.of('expiring', key.tenant, key.connection);
    expect(expiring).toHaveLength(1);
    const described = await describeCredential(caller, key);
    expect(described.refreshTokenExpiresAt).toBe(expiring[0]!.data.refreshTokenExpiresAt);
    const endsAt = Date.parse(described.refreshTokenExpiresAt);
    expect(endsAt).toBeGreaterThanOrEqual(sent + 4_000);
    expect(endsAt).toBeLessThanOrEqual(Date.now() + 5_000);
    expect(expiring[0]!.data).toEqual({
      eventId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      tenant: key.tenant,
      connection: key.connection,
      provider: 'ends',
      version: described.version,
      refreshTokenExpiresAt: described.refreshTokenExpiresAt,
    });
    expect(await outboxTypes(key.tenant, 'expiring')).toHaveLength(1);
  });

  it('register takes refreshTokenExpiresAt; list filters by expiringWithinDays', async () => {
    const soon = { tenant: 'listed', connection: 'soon' };
    const later = { tenant: 'listed', connection: 'later' };
    const unknown = { tenant: 'listed', connection: 'unknown' };
    const soonAt = new Date(Date.now() + 86_400_000).toISOString();
    const laterAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
    for (const [key, at] of [
      [soon, soonAt],
      [later, laterAt],
      [unknown, undefined],
    ] as const) {
      const tokens = plain.issueTokens();
      const reg = await caller.admin('register', {
        ...key,
        provider: 'registered',
        accessToken: tokens.accessToken,
        refreshToken: tokens.refreshToken,
        expiresIn: 3_600,
        ...(at ? { refreshTokenExpiresAt: at } : {}),
      });
      expect(reg.ok).toBe(true);
      if (at) expect(reg.credential.refreshTokenExpiresAt).toBe(at);
      else expect(reg.credential.refreshTokenExpiresAt).toBeUndefined();
    }
    // Within the 7-day window at registration: warned once, by the refresh brought forward to it.
    await waitFor(() => events.of('expiring', soon.tenant, soon.connection).length > 0, { timeoutMs: 10_000 });
    expect(events.of('expiring', soon.tenant, soon.connection)[0]!.data.refreshTokenExpiresAt).toBe(soonAt);
    expect(events.of('expiring', later.tenant, later.connection)).toHaveLength(0);

    const within = await caller.list({ tenant: 'listed', expiringWithinDays: 2 });
    expect(within.ok).toBe(true);
    expect(within.items.map((c: any) => c.connection)).toEqual(['soon']);
    const wide = await caller.list({ tenant: 'listed', expiringWithinDays: 60 });
    expect(wide.items.map((c: any) => c.connection)).toEqual(['later', 'soon']);
    const all = await caller.list({ tenant: 'listed' });
    expect(all.items).toHaveLength(3);
    const bad = await caller.list({ tenant: 'listed', expiringWithinDays: -1 });
    expect(bad).toMatchObject({ ok: false, error: { code: 'bad_request' } });
  });
});
