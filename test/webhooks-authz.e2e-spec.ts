/**
 * Webhook endpoints under the generated NATS permissions: a tenant admin manages its own
 * tenant's endpoints through the real refresher, and the server refuses it another tenant's.
 */
import { connect, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { encodeJson, webhookSubject, type WebhookOperation } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  permissionError,
  startNatsServer,
  startSandboxProvider,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';
import { buildAuthz } from '../apps/tokenctl/src/authz.command.js';
import type { GeneratedUser } from '../apps/tokenctl/src/authz.render.js';
import { credentialsOf, natsEnvOf } from '../apps/tokenctl/test/generated-users.js';

const ENDPOINT = { id: 'main', url: 'https://hooks.example.com/tk', secret: 'a'.repeat(40), events: ['failed'] };

describe('webhook endpoints under the generated NATS permissions', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let users: Map<string, GeneratedUser>;
  const connections: NatsConnection[] = [];

  const connectAs = async (name: string): Promise<NatsConnection> => {
    const user = users.get(name)!;
    const nc = await connect({
      servers: nats.url,
      ...credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      noAsyncTraces: true,
    });
    connections.push(nc);
    return nc;
  };
  const call = async (nc: NatsConnection, subject: string, body: unknown = {}): Promise<any> =>
    (await nc.request(subject, encodeJson(body), { timeout: 10_000 })).json();

  beforeAll(async () => {
    const generated = buildAuthz({ refresher: true, operator: true, tenant: ['acme', 'globex'] });
    users = new Map(generated.users.map((u) => [u.user.name, u]));
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config: generated.config }),
      createTestDatabase('tk_wh_authz'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, natsEnvOf(users.get('refresher')!)),
      sandboxProviders(sandbox),
    );
  }, 120_000);

  afterAll(async () => {
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it("a tenant admin sets, lists and deletes its own endpoints and is refused another tenant's by the server", async () => {
    const admin = await connectAs('admin-acme');
    expect(await call(admin, webhookSubject('set', 'acme'), ENDPOINT)).toEqual({ ok: true });
    expect(await call(admin, webhookSubject('list', 'acme'))).toEqual({
      ok: true,
      items: [{ id: 'main', url: ENDPOINT.url, events: ['failed'] }],
    });

    const operator = await connectAs('operator');
    expect(await call(operator, webhookSubject('set', 'globex'), ENDPOINT)).toEqual({ ok: true });

    for (const op of ['set', 'delete', 'list'] satisfies WebhookOperation[]) {
      const outcome = await admin.request(webhookSubject(op, 'globex'), encodeJson(ENDPOINT), { timeout: 3_000 }).then(
        () => 'answered',
        (error: unknown) => error,
      );
      const violation = permissionError(outcome);
      expect(violation, `${op}: ${String(outcome)}`).toBeInstanceOf(PermissionViolationError);
      expect(violation!.operation).toBe('publish');
    }
    expect((await call(operator, webhookSubject('list', 'globex'))).items).toHaveLength(1);
    expect(await call(admin, webhookSubject('delete', 'acme'), { id: 'main' })).toEqual({ ok: true });
    expect((await call(admin, webhookSubject('list', 'acme'))).items).toEqual([]);
  });
});
