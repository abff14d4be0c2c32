import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { adminSubject, AUDIT_STREAM, encodeJson, tokenGetSubject } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  sleep,
  startNatsCluster,
  startSandboxProvider,
  waitFor,
  type NatsClusterHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEnv, Db, startTestAudit, type TestAudit, waitForAuditToCatchUp } from '../../audit/test/audit.harness.js';
import { OutboxRelay } from '../src/audit/outbox-relay.service.js';
import { sandboxProviders, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

const TENANT = 'cluster';
const CREDENTIALS = 24;
const TTL_SECONDS = 3;
const CALL_LOOPS = 8;
/** A token.get unanswered this long counts as failed (a request in flight to the dying node is lost). */
const REQUEST_TIMEOUT_MS = 1_000;
/**
 * The reconnect window: token.get may fail only if it was sent between REQUEST_TIMEOUT_MS
 * before the kill (in flight when the node died) and this long after it. Clients reconnect
 * within a few hundred ms (reconnectTimeWait 250 ms, other nodes known from INFO).
 */
const RECONNECT_WINDOW_MS = 2_000;
const LOAD_BEFORE_KILL_MS = 5_000;
const LOAD_AFTER_KILL_MS = 8_000;
/** Raft elections of nats-server 2.9 take 4–9 s after a leader vanishes. */
const LEADER_ELECTION_MS = 15_000;
const CONSUMER = 'tokenkeeper-audit';

/**
 * The subjects this test speaks, in one place.
 */
const wire = {
  register: (nc: NatsConnection, connection: string, body: Record<string, unknown>) =>
    requestJson(nc, adminSubject('register', TENANT, connection), body, 10_000),
  get: (nc: NatsConnection, connection: string, body: Record<string, unknown> = {}) =>
    requestJson(nc, tokenGetSubject(TENANT, connection), body, REQUEST_TIMEOUT_MS),
};

async function requestJson(nc: NatsConnection, subject: string, body: unknown, timeout: number): Promise<any> {
  return (await nc.request(subject, encodeJson(body), { timeout })).json();
}

interface Call {
  connection: string;
  sentAt: number;
  receivedAt: number;
  /** Undefined when ok. */
  failure?: string;
  version?: number;
  expiresAt?: number;
}

/** Names of the client connections a node holds (from its monitoring endpoint). */
async function connectionNames(monitorUrl: string): Promise<string[]> {
  const response = await fetch(`${monitorUrl}/connz?limit=1024`, { signal: AbortSignal.timeout(1_000) });
  const body = (await response.json()) as { connections?: { name?: string }[] };
  return (body.connections ?? []).map((c) => c.name ?? '');
}

async function streamLeader(jsm: JetStreamManager): Promise<string | undefined> {
  try {
    return (await jsm.streams.info(AUDIT_STREAM)).cluster?.leader;
  } catch {
    return undefined;
  }
}

async function consumerLeader(jsm: JetStreamManager): Promise<string | undefined> {
  try {
    return (await jsm.consumers.info(AUDIT_STREAM, CONSUMER)).cluster?.leader;
  } catch {
    return undefined;
  }
}

/**
 * Moves a raft group's leadership to `target` by asking the current leader to step down
 * until the election lands there (each election picks among the other replicas).
 */
async function moveLeader(
  nc: NatsConnection,
  stepdownSubject: string,
  leaderOf: () => Promise<string | undefined>,
  target: string,
): Promise<void> {
  for (let attempt = 0; attempt < 16; attempt++) {
    const leader = await waitFor(leaderOf, {
      timeoutMs: LEADER_ELECTION_MS,
      intervalMs: 100,
      message: `a leader for ${stepdownSubject}`,
    });
    if (leader === target) return;
    await nc.request(stepdownSubject, '', { timeout: 5_000 }).catch(() => undefined);
    await waitFor(async () => (await leaderOf()) !== leader || undefined, {
      timeoutMs: LEADER_ELECTION_MS,
      intervalMs: 100,
      message: `${leader} to step down`,
    });
  }
  throw new Error(`could not move the leader of ${stepdownSubject} to ${target}`);
}

/**
 * Scale-out on a real NATS cluster: three routed nats-server 2.9 nodes
 * with TOKEN_AUDIT at replicas 3. Refresher A (the active outbox relay) is on n1, which
 * also leads the stream and the audit consumer; refresher B on n2; the audit app and the
 * clients on n3. n1 is killed with SIGKILL under token.get load while short-lived tokens
 * keep every credential refreshing. Wanted: A reconnects to another node, token.get fails
 * only inside the reconnect window, the stream re-elects a leader and stays writable, and
 * every committed version has exactly one audit record (nothing lost, nothing doubled).
 */
describe('scale-out on a three-node NATS cluster: one node killed under load', () => {
  let cluster: NatsClusterHandle;
  let refresherDb: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let refreshers: TestRefresher[] = [];
  let audit: TestAudit;
  let client: NatsConnection;
  let admin: NatsConnection;
  let jsm: JetStreamManager;
  let rdb: Db;
  let adb: Db;

  beforeAll(async () => {
    [cluster, refresherDb, auditDb, sandbox] = await Promise.all([
      startNatsCluster({ size: 3, jetstream: true }),
      createTestDatabase('tk_cl_r'),
      createTestDatabase('tk_cl_a'),
      startSandboxProvider({ accessTokenTtlSeconds: TTL_SECONDS, rotateRefreshTokens: true, reuseGraceSeconds: 0 }),
    ]);
    rdb = new Db(refresherDb.url);
    adb = new Db(auditDb.url);
    // The test's own connections never touch n1, so that what they see is the survivors' view.
    admin = await connect({
      servers: [cluster.urls[1]!, cluster.urls[2]!],
      noAsyncTraces: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    client = await connect({
      servers: cluster.urls[2]!,
      noAsyncTraces: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    // Short API timeout: while a raft group has no leader, its info requests go unanswered, and polls should stay fine-grained.
    jsm = await jetstreamManager(admin, { timeout: 1_000 });
  }, 30_000);

  afterAll(async () => {
    await Promise.all(refreshers.map((r) => r.close().catch(() => undefined)));
    await audit?.close().catch(() => undefined);
    await Promise.all([client?.close(), admin?.close()]);
    await Promise.all([rdb?.close(), adb?.close(), sandbox?.close()]);
    await cluster?.stop();
    await Promise.all([refresherDb?.drop(), auditDb?.drop()]);
  });

  it('reconnects, re-elects the stream leader and keeps exactly one audit record per committed version', async () => {
    const testStart = Date.now();
    const [n1, n2, n3] = cluster.nodes;
    const keys = testKeys();
    const providers = sandboxProviders(sandbox);
    // One node each (nats.js shuffles a server list, which would make the placement random);
    // the others are learnt from the server's INFO and used on reconnect.
    const refresherEnv = (url: string, replica: string) =>
      testEnv(
        { natsUrl: url, databaseUrl: refresherDb.url, keys },
        {
          REPLICA_ID: replica,
          AUDIT_STREAM_REPLICAS: '3',
          AUDIT_RELAY_BACKOFF_MAX_MS: '1000',
          AUDIT_RELAY_STANDBY_POLL_MS: '200',
          REFRESH_MIN_MARGIN_SECONDS: '1',
        },
      );
    // A first: it applies the migrations, creates the stream and becomes the active relay.
    refreshers.push(await startTestRefresher(refresherEnv(n1!.url, 'cl-a'), providers));
    const info = await waitFor(() => jsm.streams.info(AUDIT_STREAM).catch(() => undefined), {
      timeoutMs: 10_000,
      message: 'the audit stream',
    });
    expect(info.config.num_replicas).toBe(3);
    audit = await startTestAudit(auditEnv(n3!.url, auditDb.url));
    refreshers.push(await startTestRefresher(refresherEnv(n2!.url, 'cl-b'), providers));
    await waitFor(() => consumerLeader(jsm), { timeoutMs: 10_000, message: 'the audit consumer' });
    const [a, b] = refreshers as [TestRefresher, TestRefresher];
    expect(a.app.get(OutboxRelay).isActive).toBe(true);
    expect(b.app.get(OutboxRelay).isActive).toBe(false);

    // n1 leads the stream and the consumer, so killing it forces both to elect anew.
    await moveLeader(admin, `$JS.API.STREAM.LEADER.STEPDOWN.${AUDIT_STREAM}`, () => streamLeader(jsm), n1!.name);
    await moveLeader(
      admin,
      `$JS.API.CONSUMER.LEADER.STEPDOWN.${AUDIT_STREAM}.${CONSUMER}`,
      () => consumerLeader(jsm),
      n1!.name,
    );
    const placed = await jsm.streams.info(AUDIT_STREAM);
    expect(placed.cluster?.replicas?.map((r) => r.name).sort()).toEqual([n2!.name, n3!.name]);
    expect(await connectionNames(n1!.monitorUrl)).toContain('tokenkeeper-refresher cl-a');
    expect(await connectionNames(n2!.monitorUrl)).toContain('tokenkeeper-refresher cl-b');

    for (let i = 0; i < CREDENTIALS; i++) {
      const reply = await wire.register(client, `c${i}`, {
        provider: 'sandbox',
        refreshToken: sandbox.issueRefreshToken(),
      });
      expect(reply.ok, JSON.stringify(reply)).toBe(true);
    }

    // token.get load from n3 through the queue group (both replicas answer), minTtl 1 s of 3 s tokens.
    const calls: Call[] = [];
    const loadStart = Date.now();
    const setupMs = loadStart - testStart;
    let stopAt = Number.POSITIVE_INFINITY;
    const load = Promise.all(
      Array.from({ length: CALL_LOOPS }, async (_, loop) => {
        for (let n = loop; Date.now() < stopAt; n += CALL_LOOPS) {
          const connection = `c${n % CREDENTIALS}`;
          const sentAt = Date.now();
          try {
            const reply = await wire.get(client, connection, { minTtlSeconds: 1 });
            const receivedAt = Date.now();
            if (reply.ok)
              calls.push({
                connection,
                sentAt,
                receivedAt,
                version: reply.token.version,
                expiresAt: Date.parse(reply.token.expiresAt),
              });
            else calls.push({ connection, sentAt, receivedAt, failure: `error ${reply.error?.code}` });
          } catch (error) {
            calls.push({ connection, sentAt, receivedAt: Date.now(), failure: (error as Error).message });
          }
          await sleep(5);
        }
      }),
    );

    await sleep(LOAD_BEFORE_KILL_MS);
    const [{ now: killedAtDb }] = await rdb.rows<{ now: Date }>('SELECT now()');
    const killedAt = Date.now();
    await cluster.kill(0);
    stopAt = killedAt + LOAD_AFTER_KILL_MS;

    // A is back, on another node, within the reconnect window.
    const reconnectedAt = await waitFor(
      async () => {
        const names = [...(await connectionNames(n2!.monitorUrl)), ...(await connectionNames(n3!.monitorUrl))];
        return names.includes('tokenkeeper-refresher cl-a') ? Date.now() : undefined;
      },
      { timeoutMs: RECONNECT_WINDOW_MS * 2, intervalMs: 50, message: 'refresher A to reconnect to n2 or n3' },
    );
    // The stream and the consumer elect a leader among the survivors.
    const newLeader = await waitFor(
      async () => {
        const leader = await streamLeader(jsm);
        return leader && leader !== n1!.name ? leader : undefined;
      },
      { timeoutMs: LEADER_ELECTION_MS, intervalMs: 100, message: 'a new stream leader' },
    );
    const electedAt = Date.now();
    await waitFor(
      async () => {
        const leader = await consumerLeader(jsm);
        return leader && leader !== n1!.name ? leader : undefined;
      },
      { timeoutMs: LEADER_ELECTION_MS, intervalMs: 100, message: 'a new consumer leader' },
    );
    await load;
    expect(electedAt - killedAt).toBeLessThan(LEADER_ELECTION_MS);

    // Still writable with n1 down: records committed after the kill were acknowledged by the stream.
    await waitFor(
      async () =>
        (await rdb.count(`SELECT count(*) AS n FROM outbox WHERE created_at > $1 AND published_at IS NOT NULL`, [
          killedAtDb,
        ])) > CREDENTIALS || undefined,
      { timeoutMs: 10_000, message: 'records committed after the kill to be published' },
    );
    // The audit app keeps storing (its consumer's leader died with n1): records of changes after the kill arrive.
    await waitFor(
      async () =>
        (await adb.count('SELECT count(*) AS n FROM audit_records WHERE at > $1', [killedAtDb])) > CREDENTIALS ||
        undefined,
      { timeoutMs: 10_000, message: 'the audit table to receive records of changes made after the kill' },
    );
    // When the audit app stored its first record of a change made after the kill (PostgreSQL clock, as killedAtDb).
    const [{ first: firstStoredDb }] = await adb.rows<{ first: Date }>(
      'SELECT min(received_at) AS first FROM audit_records WHERE at > $1',
      [killedAtDb],
    );
    const storedAfterKillMs = firstStoredDb.getTime() - killedAtDb.getTime();
    // Two elections (stream, then consumer) and a re-pull after missed heartbeats: well under 25 s.
    // With nats.js's default 30 s pull expiry the consumer sat idle for 30 s more.
    expect(storedAfterKillMs).toBeLessThan(25_000);
    const [{ now: beforeRestartDb }] = await rdb.rows<{ now: Date }>('SELECT now()');
    const writtenWhileDown = await rdb.count(
      `SELECT count(*) AS n FROM outbox WHERE created_at > $1 AND published_at IS NOT NULL AND published_at < $2`,
      [killedAtDb, beforeRestartDb],
    );

    // token.get: every failure falls inside the reconnect window; nothing expired was served.
    const failures = calls.filter((c) => c.failure !== undefined);
    const outside = failures.filter(
      (c) => c.sentAt < killedAt - REQUEST_TIMEOUT_MS || c.sentAt > killedAt + RECONNECT_WINDOW_MS,
    );
    expect(
      outside.map((c) => ({ ...c, sentAfterKillMs: c.sentAt - killedAt })),
      'token.get failures outside the reconnect window',
    ).toEqual([]);
    const served = calls.filter((c) => c.failure === undefined);
    expect(
      served.filter((c) => c.expiresAt! <= c.receivedAt),
      'expired tokens served',
    ).toEqual([]);
    expect(served.filter((c) => c.sentAt < killedAt).length).toBeGreaterThan(200);
    expect(served.filter((c) => c.sentAt > killedAt + RECONNECT_WINDOW_MS).length).toBeGreaterThan(200);

    // The node comes back and catches up; then both replicas stop gracefully (the relay drains).
    await cluster.restart(0);
    await waitFor(
      async () => {
        const s = await jsm.streams.info(AUDIT_STREAM);
        return (s.cluster?.replicas?.length === 2 && s.cluster.replicas.every((r) => r.current)) || undefined;
      },
      { timeoutMs: LEADER_ELECTION_MS, intervalMs: 200, message: 'every stream replica to be current again' },
    );
    await Promise.all(refreshers.map((r) => r.close()));
    refreshers = [];
    expect(await rdb.count('SELECT count(*) AS n FROM outbox WHERE published_at IS NULL')).toBe(0);

    // The audit table holds exactly the outbox, and the stream each record once.
    const { outbox, audit: stored } = await waitForAuditToCatchUp(rdb, adb).catch(async (error: Error) => {
      // Say where it stuck: the consumer's view and the audit app's log.
      const consumer = await jsm.consumers.info(AUDIT_STREAM, CONSUMER).catch((e: Error) => e.message);
      const counts = [
        await rdb.count('SELECT count(*) AS n FROM outbox'),
        await adb.count('SELECT count(*) AS n FROM audit_records'),
      ];
      error.message += `\noutbox/audit rows: ${counts.join('/')}\nconsumer: ${JSON.stringify(consumer)}\naudit log:\n${audit.logs.text().slice(-4_000)}`;
      throw error;
    });
    expect(stored).toEqual(outbox);
    expect(await adb.count('SELECT count(*) AS n FROM audit_records')).toBe(outbox.length);
    const state = (await jsm.streams.info(AUDIT_STREAM)).state;
    expect(state.messages).toBe(outbox.length);

    // Every committed version has exactly one refreshed record; none exists for any other version.
    const credentials = await rdb.rows<{ connection: string; version: number; status: string }>(
      'SELECT connection, version, status FROM credentials WHERE tenant = $1 ORDER BY connection',
      [TENANT],
    );
    expect(credentials).toHaveLength(CREDENTIALS);
    expect(credentials.filter((c) => c.status !== 'active')).toEqual([]);
    const refreshed = await adb.rows<{ connection: string; version: number; n: string }>(
      `SELECT connection, version, count(*) AS n FROM audit_records WHERE tenant = $1 AND type = 'refreshed' GROUP BY connection, version`,
      [TENANT],
    );
    const versionsOf = new Map<string, number[]>();
    for (const row of refreshed) {
      expect(Number(row.n), `${row.connection} v${row.version}`).toBe(1);
      versionsOf.set(row.connection, [...(versionsOf.get(row.connection) ?? []), row.version]);
    }
    for (const c of credentials) {
      const versions = (versionsOf.get(c.connection) ?? []).sort((x, y) => x - y);
      // Registered with a refresh token only (version 1); each refresh commits the next version.
      expect(versions, c.connection).toEqual(Array.from({ length: c.version - 1 }, (_, i) => i + 2));
    }
    const committedRefreshes = credentials.reduce((sum, c) => sum + c.version - 1, 0);
    // Refreshes went on across the kill, by both replicas.
    const byReplica = await rdb.rows<{ replica: string; n: string }>(
      `SELECT payload->>'replica' AS replica, count(*) AS n FROM outbox WHERE type = 'refreshed' AND created_at > $1 GROUP BY 1 ORDER BY 1`,
      [killedAtDb],
    );
    expect(byReplica.map((r) => r.replica)).toEqual(['cl-a', 'cl-b']);

    // The rotation chain survived: no refresh token presented twice, no family revoked.
    expect(sandbox.everPresentedTwice()).toEqual([]);
    expect(sandbox.stats.reuseDetected).toBe(0);
    expect(sandbox.stats.refreshGrants).toBe(committedRefreshes);

    console.info(
      `nats-cluster: ${calls.length} token.get (${failures.length} failed${failures.length ? `, sent ${Math.min(...failures.map((f) => f.sentAt - killedAt))}..${Math.max(...failures.map((f) => f.sentAt - killedAt))} ms from the kill` : ''}), ` +
        `A reconnected after ${reconnectedAt - killedAt} ms, stream leader ${n1!.name} → ${newLeader} after ${electedAt - killedAt} ms, ` +
        `${writtenWhileDown} records written while n1 was down, the first stored ${storedAfterKillMs} ms after the kill, ${committedRefreshes} refreshes, ` +
        `${outbox.length} audit records; setup ${setupMs} ms, from load start to the end ${Date.now() - loadStart} ms`,
    );
  }, 60_000);
});
