/**
 * The services' own inboxes are not reply subjects. Under the permissions `tokenctl authz`
 * generates, the refresher and the audit app may answer any reply subject they are handed
 * (`allow_responses`), and their own inboxes (`_INBOX_refresher…`, `_INBOX_audit…`, where
 * JetStream acks and their own requests' answers arrive) start with `_INBOX` like everyone
 * else's. A consumer or tenant admin naming such a subject as its reply must get nothing
 * published there, while its normal requests are answered.
 */
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { adminSubject, auditQuerySubject, encodeJson, tokenGetSubject } from '@tokenkeeper/contracts';
import { RPC_DROPPED_METRIC } from '@tokenkeeper/nats';
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
import { AuditMetrics } from '../apps/audit/src/audit.metrics.js';
import { auditEnv, startTestAudit, type TestAudit } from '../apps/audit/test/audit.harness.js';
import { RefreshMetrics } from '../apps/refresher/src/metrics/refresh.metrics.js';
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';
import { buildAuthz } from '../apps/tokenctl/src/authz.command.js';
import { renderServerConfig, type GeneratedUser } from '../apps/tokenctl/src/authz.render.js';
import { allAccessUser, credentialsOf, natsEnvOf } from '../apps/tokenctl/test/generated-users.js';

/** How long we listen for a reply that must not come. */
const SILENCE_MS = 500;

/** Watches the services' inboxes, which no generated role may read. */
const WATCHER = allAccessUser('watcher');

describe("replies into the services' own inboxes, under the generated permissions", () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: TestAudit;
  let users: Map<string, GeneratedUser>;
  const connections: NatsConnection[] = [];

  const connectAs = async (user: GeneratedUser): Promise<NatsConnection> => {
    const nc = await connect({
      servers: nats.url,
      ...credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      noAsyncTraces: true,
    });
    connections.push(nc);
    return nc;
  };

  const dropped = async (registry: { getSingleMetricAsString(name: string): Promise<string> }, reason: string) => {
    const text = await registry.getSingleMetricAsString(RPC_DROPPED_METRIC);
    const match = new RegExp(`tokenkeeper_rpc_dropped_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
    return match ? Number(match[1]) : NaN;
  };

  beforeAll(async () => {
    const generated = buildAuthz({ refresher: true, audit: true, tenant: ['acme'] });
    users = new Map(generated.users.map((u) => [u.user.name, u]));
    [nats, db, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config: renderServerConfig([...generated.users, WATCHER]) }),
      createTestDatabase('tk_own_inbox'),
      createTestDatabase('tk_own_inbox_audit'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, natsEnvOf(users.get('refresher')!)),
      sandboxProviders(sandbox),
    );
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url, natsEnvOf(users.get('audit')!)));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await audit?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([db?.drop(), auditDb?.drop()]);
  });

  it('publishes nothing into the refresher or audit inbox named as a reply subject; a normal inbox is answered', async () => {
    const admin = await connectAs(users.get('admin-acme')!);
    const consumer = await connectAs(users.get('svc-acme')!);
    const watcher = await connectAs(WATCHER);
    const registered = (
      await admin.request(
        adminSubject('register', 'acme', 'github'),
        encodeJson({ provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3600 }),
        { timeout: 10_000 },
      )
    ).json();
    expect(registered).toMatchObject({ ok: true });

    const seen: string[] = [];
    const subs: Subscription[] = ['_INBOX_refresher.>', '_INBOX_audit.>'].map((subject) =>
      watcher.subscribe(subject, { callback: (_err, msg) => void seen.push(msg.subject) }),
    );
    await watcher.flush();

    // What an attacker would aim at: a subject under each service's own inbox prefix.
    consumer.publish(tokenGetSubject('acme', 'github'), encodeJson({}), { reply: '_INBOX_refresher.forged.1' });
    admin.publish(adminSubject('describe', 'acme', 'github'), encodeJson({}), { reply: '_INBOX_refresher.forged.2' });
    admin.publish(auditQuerySubject('acme'), encodeJson({}), { reply: '_INBOX_audit.forged.3' });
    await Promise.all([consumer.flush(), admin.flush()]);

    // The positive control, sent after the forged requests on the same connections (so they
    // were delivered first): the same users, their own inboxes, answered.
    const got = (await consumer.request(tokenGetSubject('acme', 'github'), encodeJson({}), { timeout: 10_000 })).json();
    expect(got).toMatchObject({ ok: true, token: { tenant: 'acme', connection: 'github' } });
    const trail = (await admin.request(auditQuerySubject('acme'), encodeJson({}), { timeout: 10_000 })).json();
    expect(trail).toMatchObject({ ok: true });
    await new Promise((resolve) => setTimeout(resolve, SILENCE_MS));

    // The watcher also sees the services' real traffic there (JetStream acks): only the forged replies count.
    expect(seen.filter((subject) => subject.includes('.forged.'))).toEqual([]);
    const refresherMetrics = refresher.app.get(RefreshMetrics).registry;
    const auditMetrics = audit.app.get(AuditMetrics).registry;
    await waitFor(
      async () =>
        (await dropped(refresherMetrics, 'own_inbox')) === 2 && (await dropped(auditMetrics, 'own_inbox')) === 1,
      { timeoutMs: 10_000 },
    );
    expect(await dropped(refresherMetrics, 'reply_subject')).toBe(0);
    const logs = refresher.logs.text() + audit.logs.text();
    expect(logs).toContain("reply subject is this service's own inbox");
    for (const sub of subs) sub.unsubscribe();
  }, 60_000);
});
