import {
  createTestDatabase,
  sleep,
  startNatsServer,
  startSandboxProvider,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RefreshMetrics } from '../src/metrics/refresh.metrics.js';
import { openRepository, Sql, TokenEndpointRecorder } from './cluster.fixtures.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from './refresher.harness.js';

const CREDENTIALS = 50;
const TTL_SECONDS = 4;
const HAMMER_MS = 15_000;
const CALL_LOOPS = 12;
/** Share of token.get calls that report the version they last saw as rejected (a 401). */
const REJECT_SHARE = 0.03;

interface Answer {
  connection: string;
  sentAt: number;
  receivedAt: number;
  rejectedVersion?: number;
  reply: any;
}

/** Sum of a metric's samples whose labels match, from a replica's own registry. */
async function metricSum(refresher: TestRefresher, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metrics = await refresher.app.get(RefreshMetrics).registry.getMetricsAsJSON();
  const metric = metrics.find((m) => m.name === name);
  if (!metric) return 0;
  return (metric.values as { value: number; labels: Record<string, unknown>; metricName?: string }[])
    .filter((v) => v.metricName === undefined || v.metricName === name || v.metricName === `${name}_count`)
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

/**
 * The refresh policy scale-out: two replicas share one database and one NATS. With rotation and
 * reuse detection at the provider (no grace at all), several refresh rounds of 50
 * credentials plus a steady stream of token.get calls, some reporting 401s, must never
 * present a refresh token twice, and the work must really be shared.
 */
describe('two refresher replicas on one database and one NATS', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let recorder: TokenEndpointRecorder;
  let replicas: TestRefresher[] = [];
  let callers: RawCaller[] = [];
  let sql: Sql;
  const keys = testKeys();
  const initialRefreshTokens = new Map<string, string>();
  const answers: Answer[] = [];

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_replicas'),
      startSandboxProvider({ accessTokenTtlSeconds: TTL_SECONDS, rotateRefreshTokens: true, reuseGraceSeconds: 0 }),
    ]);
    recorder = await TokenEndpointRecorder.start(sandbox.tokenUrl);
    // Every rejected version here is to be replaced at once: no on-demand budget (refresh-budgets.e2e-spec.ts covers it).
    const providers = sandboxProviders(sandbox, { tokenUrl: recorder.url, onDemandCooldownSeconds: 0 });
    const base = { natsUrl: nats.url, databaseUrl: db.url, keys };
    // One after the other: the first one applies the migrations.
    replicas.push(await startTestRefresher(testEnv(base, { REPLICA_ID: 'replica-a' }), providers));
    replicas.push(await startTestRefresher(testEnv(base, { REPLICA_ID: 'replica-b' }), providers));
    callers = await Promise.all([RawCaller.connect(nats.url), RawCaller.connect(nats.url)]);
    sql = Sql.open(db.url);
  });

  afterAll(async () => {
    await Promise.all(callers.map((c) => c.close()));
    await Promise.all(replicas.map((r) => r.close()));
    await Promise.all([sandbox?.close(), recorder?.close(), nats?.stop(), sql?.close()]);
    await db?.drop();
  });

  it('refreshes every credential several times, never presenting a refresh token twice', async () => {
    // Register 50 credentials with a refresh token only: each is due at once.
    await Promise.all(
      Array.from({ length: CREDENTIALS }, async (_, i) => {
        const connection = `c${String(i).padStart(2, '0')}`;
        const refreshToken = sandbox.issueRefreshToken();
        initialRefreshTokens.set(connection, refreshToken);
        const reply = await callers[i % 2]!.admin('register', {
          tenant: 'replicas',
          connection,
          provider: 'sandbox',
          refreshToken,
        });
        expect(reply.ok).toBe(true);
      }),
    );

    // Hammer token.get through the queue group (both replicas answer), some calls with rejectedVersion.
    const lastSeen = new Map<string, number>();
    const stopAt = Date.now() + HAMMER_MS;
    await Promise.all(
      Array.from({ length: CALL_LOOPS }, async (_, loop) => {
        const caller = callers[loop % callers.length]!;
        while (Date.now() < stopAt) {
          const connection = `c${String(Math.floor(Math.random() * CREDENTIALS)).padStart(2, '0')}`;
          const seen = lastSeen.get(connection);
          const rejectedVersion = seen !== undefined && Math.random() < REJECT_SHARE ? seen : undefined;
          const request = {
            tenant: 'replicas',
            connection,
            ...(rejectedVersion !== undefined ? { rejectedVersion } : {}),
          };
          const sentAt = Date.now();
          const reply = await caller.get(request);
          const receivedAt = Date.now();
          answers.push({ connection, sentAt, receivedAt, rejectedVersion, reply });
          if (reply.ok) lastSeen.set(connection, Math.max(lastSeen.get(connection) ?? 0, reply.token.version));
          await sleep(2);
        }
      }),
    );

    // token.get: always a token, never an expired one, never the version reported rejected.
    expect(answers.length).toBeGreaterThan(1_000);
    const failed = answers.filter((a) => !a.reply.ok);
    expect(
      failed.map((a) => a.reply.error),
      'token.get errors',
    ).toEqual([]);
    const expired = answers.filter((a) => Date.parse(a.reply.token.expiresAt) <= a.receivedAt);
    expect(
      expired.map((a) => ({
        ...a.reply.token,
        accessToken: undefined,
        receivedAt: new Date(a.receivedAt).toISOString(),
      })),
      'expired tokens served',
    ).toEqual([]);
    const withRejection = answers.filter((a) => a.rejectedVersion !== undefined);
    expect(withRejection.length).toBeGreaterThan(50);
    expect(withRejection.filter((a) => a.reply.token.version <= a.rejectedVersion!)).toEqual([]);
    // Served tokens are real: the provider's API accepts the current one of every credential.
    for (let i = 0; i < CREDENTIALS; i++) {
      const got = await callers[0]!.get({ tenant: 'replicas', connection: `c${String(i).padStart(2, '0')}` });
      const api = await fetch(sandbox.apiUrl, { headers: { authorization: `Bearer ${got.token.accessToken}` } });
      expect(api.status, `API with the token of c${i}`).toBe(200);
    }

    // Both replicas answered token.get and both refreshed.
    for (const replica of replicas) {
      const gets =
        (await metricSum(replica, 'tokenkeeper_token_get_cache_hits_total')) +
        (await metricSum(replica, 'tokenkeeper_token_get_seconds'));
      expect(gets, `token.get answered by ${replica.config.replicaId}`).toBeGreaterThan(100);
      expect(
        await metricSum(replica, 'tokenkeeper_refreshes_total', { outcome: 'success' }),
        `refreshes by ${replica.config.replicaId}`,
      ).toBeGreaterThan(20);
    }

    // Stop both replicas (a graceful stop finishes in-flight refreshes) so that the chains are final.
    await Promise.all(replicas.map((r) => r.close()));
    replicas = [];

    // The provider never saw a refresh token twice, never revoked a family.
    expect(sandbox.everPresentedTwice()).toEqual([]);
    expect(sandbox.stats.reuseDetected).toBe(0);
    expect(sandbox.stats.familiesRevoked).toBe(0);
    expect(recorder.exchanges.filter((e) => e.status !== 200)).toEqual([]);
    const presented = recorder.presented();
    expect(new Set(presented).size).toBe(presented.length);

    // Every credential advanced several versions; each version is one grant whose answer was kept.
    const rows = await sql.rows('replicas');
    expect(rows).toHaveLength(CREDENTIALS);
    for (const row of rows) {
      expect(row, `${row.connection}`).toMatchObject({ status: 'active', lease_owner: null });
      expect(row.version, `versions of ${row.connection}`).toBeGreaterThanOrEqual(5);
    }
    const committedRefreshes = rows.reduce((sum, r) => sum + r.version - 1, 0);
    expect(sandbox.stats.refreshGrants).toBe(committedRefreshes);
    expect(presented.length).toBe(committedRefreshes);

    // The whole rotation chain: every refresh token ever issued was presented exactly once,
    // except the one each credential holds now, which was never presented.
    const { repository, close } = await openRepository(db.url, keys);
    const current = new Set<string>();
    try {
      for (const row of rows) {
        const credential = await repository.find({ tenant: 'replicas', connection: row.connection });
        current.add(credential!.refreshToken!.reveal());
      }
    } finally {
      await close();
    }
    expect(current.size).toBe(CREDENTIALS);
    const chain = [...initialRefreshTokens.values(), ...recorder.issued()];
    expect(chain.length).toBe(CREDENTIALS + committedRefreshes);
    const wrongCounts = chain
      .map((token) => ({ current: current.has(token), presentations: sandbox.presentations(token) }))
      .filter((t) => t.presentations !== (t.current ? 0 : 1));
    expect(wrongCounts).toEqual([]);

    // The work was shared: the audit trail shows refreshes by both replicas, and every one of them.
    const byReplica = await sql.auditCountsByReplica('refreshed', 'replicas');
    expect(Object.keys(byReplica).sort()).toEqual(['replica-a', 'replica-b']);
    expect(byReplica['replica-a']! + byReplica['replica-b']!).toBe(committedRefreshes);
    expect(Math.min(byReplica['replica-a']!, byReplica['replica-b']!)).toBeGreaterThan(committedRefreshes * 0.1);

    const minTtlMs = Math.min(...answers.map((a) => Date.parse(a.reply.token.expiresAt) - a.receivedAt));
    console.info(
      `replicas: ${answers.length} token.get (${withRejection.length} with rejectedVersion), ${committedRefreshes} refreshes ` +
        `(${JSON.stringify(byReplica)}), min remaining TTL served ${minTtlMs} ms`,
    );
  });
});
