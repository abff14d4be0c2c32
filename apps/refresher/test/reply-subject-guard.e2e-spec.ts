import { jetstreamManager } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import { AUDIT_STREAM, encodeJson, WireSubscription } from '@tokenkeeper/contracts';
import { RPC_DROPPED_METRIC } from '@tokenkeeper/nats';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  type NatsServerHandle,
  type SandboxProvider,
  waitFor,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditMetrics } from '../../audit/src/audit.metrics.js';
import { auditEnv, startTestAudit, type TestAudit } from '../../audit/test/audit.harness.js';
import { RefreshMetrics } from '../src/metrics/refresh.metrics.js';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
  wire,
} from './refresher.harness.js';

/**
 * The wire contract "Reply subjects": on a bus without permissions (the defence-in-depth case), a
 * request whose reply subject is one of the services' own subjects is dropped unanswered,
 * counted and logged without its payload; it puts nothing on that subject or into TOKEN_AUDIT.
 */
describe('reply-subject guard (REPLY_SUBJECT_PREFIXES)', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let auditDb: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: TestAudit;
  let caller: RawCaller;

  const HOSTILE = ['token.refreshed.acme.github', 'audit.token.refreshed.acme.github'];
  const MARKER = 'payload-marker-7f3a';

  beforeAll(async () => {
    [nats, db, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_guard'),
      createTestDatabase('tk_guard_audit'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url));
    caller = await RawCaller.connect(nats.url);
    const registered = await caller.admin('register', {
      tenant: 'acme',
      connection: 'github',
      provider: 'sandbox',
      ...sandbox.issueTokens(),
      expiresIn: 3600,
    });
    expect(registered.ok).toBe(true);
  });

  afterAll(async () => {
    await caller?.close();
    await audit?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([db?.drop(), auditDb?.drop()]);
  });

  const dropped = async (registry: { getSingleMetricAsString(name: string): Promise<string> }) => {
    const text = await registry.getSingleMetricAsString(RPC_DROPPED_METRIC);
    const match = /tokenkeeper_rpc_dropped_total\{reason="reply_subject"\} (\d+)/.exec(text);
    return match ? Number(match[1]) : NaN;
  };

  const auditStreamSubjects = async (): Promise<Record<string, number>> => {
    const jsm = await jetstreamManager(caller.nc);
    const info = await jsm.streams.info(AUDIT_STREAM, { subjects_filter: '>' });
    return (info.state.subjects ?? {}) as Record<string, number>;
  };

  it('answers nothing to a hostile reply subject, counts it, logs it once without the payload, and still answers inboxes', async () => {
    const refresherMetrics = refresher.app.get(RefreshMetrics).registry;
    const auditMetrics = audit.app.get(AuditMetrics).registry;
    expect(await dropped(refresherMetrics)).toBe(0);
    expect(await dropped(auditMetrics)).toBe(0);
    await waitFor(async () => (await auditStreamSubjects())['audit.token.registered.acme.github'] === 1, {
      timeoutMs: 20_000,
    });
    const streamBefore = await auditStreamSubjects();

    const seen: string[] = [];
    const subs: Subscription[] = HOSTILE.map((subject) =>
      caller.nc.subscribe(subject, { callback: (_err, msg) => void seen.push(msg.subject) }),
    );
    await caller.nc.flush();

    const body = encodeJson({ tenant: 'acme', connection: 'github', note: MARKER });
    const get = wire.tokenGet('acme', 'github');
    const describe = wire.admin('describe', 'acme', 'github');
    const query = wire.auditQuery('acme');
    for (const reply of HOSTILE) {
      for (let i = 0; i < 3; i++) {
        caller.nc.publish(get, body, { reply });
        caller.nc.publish(describe, body, { reply });
        caller.nc.publish(query, encodeJson({ tenant: 'acme' }), { reply });
      }
    }
    await caller.nc.flush();

    // Each service saw every request: 12 token.get/describe for the refresher, 6 audit.query for the audit app.
    await waitFor(async () => (await dropped(refresherMetrics)) === 12 && (await dropped(auditMetrics)) === 6, {
      timeoutMs: 10_000,
    });
    // A normal request, sent after the hostile ones, is answered: so they had their turn.
    const ok = await caller.get({ tenant: 'acme', connection: 'github' });
    expect(ok).toMatchObject({ ok: true, token: { tenant: 'acme', connection: 'github' } });
    expect((await caller.auditQuery({ tenant: 'acme' })).ok).toBe(true);
    await caller.nc.flush();
    await new Promise((resolve) => setTimeout(resolve, 300));

    expect(seen).toEqual([]);
    expect(await auditStreamSubjects()).toEqual(streamBefore);
    expect(await dropped(refresherMetrics)).toBe(12);
    expect(await dropped(auditMetrics)).toBe(6);

    // Rate-limited: one line per reason and server within the interval, naming the subscription
    // (not the tenant's subject), never the payload. (Nest's
    // logger is process-wide, so in this one process both apps' lines may land in either capture.)
    const logs = refresher.logs.text() + audit.logs.text();
    const lines = logs.split('\n').filter((line) => line.includes('reply subject outside REPLY_SUBJECT_PREFIXES'));
    expect(lines).toHaveLength(2);
    expect(lines.every((line) => line.includes('"reason":"reply_subject"'))).toBe(true);
    expect(lines.some((line) => line.includes(`"subject":"${WireSubscription.auditQueryOfTenant}"`))).toBe(true);
    const refresherPatterns = [WireSubscription.tokenGet, WireSubscription.admin('describe')];
    expect(lines.some((line) => refresherPatterns.some((pattern) => line.includes(`"subject":"${pattern}"`)))).toBe(
      true,
    );
    expect(logs).not.toContain(MARKER);
    for (const sub of subs) sub.unsubscribe();
  });
});
