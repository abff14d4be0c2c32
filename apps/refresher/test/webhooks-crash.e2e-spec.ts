import { webhookSubject } from '@tokenkeeper/contracts';
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
import { ChildApp, Db, writeProvidersFile } from '../../audit/test/audit.harness.js';
import { RawCaller, testEnv, testKeys } from './refresher.harness.js';
import { WebhookReceiver } from './webhook-receiver.js';

const CREDENTIALS = 5;
const SECRET = 'crash-test-secret-of-more-than-32-characters';

/**
 * The refresher is killed with SIGKILL after changes were committed and while a delivery is
 * on the wire (the receiver holds it unanswered): after a restart every change arrives, in
 * order per credential, under the ids it was first sent with.
 */
describe('webhooks: refresher killed between the change and its delivery', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let sandbox: SandboxProvider;
  let providers: ReturnType<typeof writeProvidersFile>;
  let refresher: ChildApp;
  let caller: RawCaller;
  let receiver: WebhookReceiver;
  let db: Db;

  beforeAll(async () => {
    [nats, database, sandbox, receiver] = await Promise.all([
      startNatsServer({ jetstream: true }),
      createTestDatabase('tk_wh_crash'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
      WebhookReceiver.start(SECRET),
    ]);
    providers = writeProvidersFile(sandbox);
    refresher = new ChildApp(
      'apps/refresher/src/main.ts',
      testEnv(
        { natsUrl: nats.url, databaseUrl: database.url, keys: testKeys() },
        {
          LOG_LEVEL: 'info',
          PROVIDERS_FILE: providers.path,
          SANDBOX_CLIENT_SECRET: 'sandbox-secret',
          WEBHOOK_ALLOWED_NETWORKS: '127.0.0.0/8',
          WEBHOOK_INTERVAL_MS: '100',
          WEBHOOK_TIMEOUT_MS: '1000',
        },
      ),
      'refresher started',
    );
    caller = await RawCaller.connect(nats.url);
    db = new Db(database.url);
  }, 60_000);

  afterAll(async () => {
    await refresher?.kill();
    await caller?.close();
    await receiver?.close();
    await db?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await database?.drop();
    providers?.remove();
  });

  it('delivers every committed change after the restart, once per id on the receiving side', async () => {
    await refresher.start();
    expect(
      await caller.call(webhookSubject('set', 'acme'), {
        id: 'main',
        url: receiver.url,
        secret: SECRET,
        events: ['registered', 'refreshed'],
      }),
    ).toEqual({ ok: true });
    receiver.mode = 'hang';
    for (let i = 0; i < CREDENTIALS; i++) {
      const tokens = sandbox.issueTokens();
      expect(
        (await caller.admin('register', { tenant: 'acme', connection: `c${i}`, provider: 'sandbox', ...tokens })).ok,
      ).toBe(true);
      expect((await caller.admin('refresh', { tenant: 'acme', connection: `c${i}` })).ok).toBe(true);
    }
    await waitFor(() => receiver.received.length >= 1, { message: 'a delivery on the wire' });
    await refresher.kill();
    const inFlight = receiver.received.map((d) => d.body.id as string);
    expect(await db.count(`SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'delivered'`)).toBe(0);

    receiver.mode = 200;
    await refresher.start();
    const accepted = await waitFor(() => (receiver.accepted().length >= CREDENTIALS * 2 ? receiver.accepted() : null), {
      timeoutMs: 30_000,
      message: 'every change delivered after the restart',
    });
    expect(accepted).toHaveLength(CREDENTIALS * 2);
    for (let i = 0; i < CREDENTIALS; i++) {
      const own = accepted.filter((b) => b.connection === `c${i}`);
      expect(own.map((b) => [b.type, b.version])).toEqual([
        ['registered', 1],
        ['refreshed', 2],
      ]);
    }
    // The deliveries in flight at the kill came again under the same ids.
    const acceptedIds = new Set(accepted.map((b) => b.id));
    for (const id of inFlight) expect(acceptedIds.has(id)).toBe(true);
    const stored = await db.rows<{ id: string }>(`SELECT id FROM webhook_deliveries`);
    expect(new Set(stored.map((r) => r.id))).toEqual(acceptedIds);
    expect(await db.count(`SELECT count(*) AS n FROM outbox WHERE webhooks_at IS NULL`)).toBe(0);
  });
});
