/**
 * The authorization model end to end: the real refresher and audit app run on a real nats-server under the
 * exact configuration `tokenctl authz` generates, each under its own user and inbox, and
 * every role is shown to do its job through the real services and be refused the rest by
 * the server. (apps/tokenctl/test/authz.e2e-spec.ts proves the same permission model with
 * stand-in responders, subject by subject; this file proves the apps work inside it.)
 */
import { connect, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { TokenClient } from '@tokenkeeper/client';
import { adminListSubject, adminSubject, auditQuerySubject, encodeJson, tokenGetSubject } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  permissionError,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEnv, startTestAudit, type TestAudit } from '../apps/audit/test/audit.harness.js';
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

/** How long a refusal may take to come back on a loaded machine; nats-server answers -ERR at once. */
const REFUSAL_MS = 3_000;

describe('the whole system under the generated NATS permissions', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: TestAudit;
  let users: Map<string, GeneratedUser>;
  const connections: NatsConnection[] = [];
  const clients: TokenClient[] = [];

  const connectAs = async (name: string): Promise<NatsConnection> => {
    const user = users.get(name)!;
    const nc = await connect({
      servers: nats.url,
      ...credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      name,
      noAsyncTraces: true,
    });
    connections.push(nc);
    return nc;
  };

  const call = async (nc: NatsConnection, subject: string, body: unknown = {}): Promise<any> =>
    (await nc.request(subject, encodeJson(body), { timeout: 10_000 })).json();

  /** The server refuses the request's publish: it never reaches a service. */
  const expectRefused = async (nc: NatsConnection, subject: string): Promise<void> => {
    const outcome = await nc.request(subject, encodeJson({}), { timeout: REFUSAL_MS }).then(
      () => 'answered',
      (error: unknown) => error,
    );
    const violation = permissionError(outcome);
    expect(violation, `${subject}: ${String(outcome)}`).toBeInstanceOf(PermissionViolationError);
    expect(violation!.operation).toBe('publish');
  };

  beforeAll(async () => {
    const generated = buildAuthz({ refresher: true, audit: true, operator: true, tenant: ['acme', 'globex'] });
    users = new Map(generated.users.map((u) => [u.user.name, u]));
    [nats, db, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config: generated.config }),
      createTestDatabase('tk_authz'),
      createTestDatabase('tk_authz_audit'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, natsEnvOf(users.get('refresher')!)),
      sandboxProviders(sandbox),
    );
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url, natsEnvOf(users.get('audit')!)));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await audit?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([db?.drop(), auditDb?.drop()]);
  });

  it('a tenant admin of acme manages acme and reads its audit trail; every globex or cross-tenant call is refused by the server', async () => {
    const admin = await connectAs('admin-acme');
    const registered = await call(admin, adminSubject('register', 'acme', 'github'), {
      provider: 'sandbox',
      ...sandbox.issueTokens(),
      expiresIn: 3600,
    });
    expect(registered).toMatchObject({
      ok: true,
      credential: { tenant: 'acme', connection: 'github', status: 'active', version: 1 },
    });
    expect(await call(admin, adminSubject('describe', 'acme', 'github'))).toMatchObject({
      ok: true,
      credential: { version: 1 },
    });
    expect(await call(admin, adminSubject('refresh', 'acme', 'github'))).toMatchObject({
      ok: true,
      credential: { version: 2 },
    });
    const listed = await call(admin, adminListSubject('acme'));
    expect(listed.ok).toBe(true);
    expect(listed.items.map((c: { connection: string }) => c.connection)).toEqual(['github']);

    await call(admin, adminSubject('register', 'acme', 'slack'), {
      provider: 'sandbox',
      ...sandbox.issueTokens(),
      expiresIn: 3600,
    });
    expect(await call(admin, adminSubject('revoke', 'acme', 'slack'))).toMatchObject({ ok: true });
    expect(await call(admin, adminSubject('describe', 'acme', 'slack'))).toMatchObject({
      ok: true,
      credential: { status: 'revoked' },
    });

    await waitFor(
      async () =>
        (await call(admin, auditQuerySubject('acme'))).items?.some((r: { type: string }) => r.type === 'revoked'),
      { timeoutMs: 20_000 },
    );
    const trail = await call(admin, auditQuerySubject('acme'));
    expect(new Set(trail.items.map((r: { tenant: string }) => r.tenant))).toEqual(new Set(['acme']));
    expect(trail.items.map((r: { type: string }) => r.type)).toEqual(
      expect.arrayContaining(['registered', 'refreshed', 'revoked']),
    );

    for (const op of ['register', 'describe', 'refresh', 'revoke'] as const)
      await expectRefused(admin, adminSubject(op, 'globex', 'github'));
    await expectRefused(admin, adminListSubject('globex'));
    await expectRefused(admin, adminListSubject());
    await expectRefused(admin, auditQuerySubject('globex'));
    await expectRefused(admin, auditQuerySubject());
    // A tenant admin manages credentials; it does not read tokens.
    await expectRefused(admin, tokenGetSubject('acme', 'github'));
  }, 90_000);

  it("a consumer of acme gets acme's tokens, signed, and their refreshes pushed; globex's are refused by the server", async () => {
    const admin = await connectAs('admin-acme');
    const globexAdmin = await connectAs('admin-globex');
    await call(admin, adminSubject('register', 'acme', 'jira'), {
      provider: 'sandbox',
      ...sandbox.issueTokens(),
      expiresIn: 3600,
    });
    await call(globexAdmin, adminSubject('register', 'globex', 'jira'), {
      provider: 'sandbox',
      ...sandbox.issueTokens(),
      expiresIn: 3600,
    });

    const user = users.get('svc-acme')!;
    const client = new TokenClient({
      servers: nats.url,
      connectOptions: credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      tenants: ['acme'],
      trustedSigners: [refresher.signerPublicKey],
    });
    clients.push(client);
    await client.start();

    const first = await client.getToken({ tenant: 'acme', connection: 'jira' });
    expect(first).toMatchObject({ tenant: 'acme', connection: 'jira', version: 1 });
    await call(admin, adminSubject('refresh', 'acme', 'jira'));
    // The refresh is pushed: the cache serves version 2 without another request.
    await waitFor(() => client.peekAccessToken({ tenant: 'acme', connection: 'jira' }) !== first.accessToken, {
      timeoutMs: 10_000,
    });
    const second = await client.getToken({ tenant: 'acme', connection: 'jira' });
    expect(second.version).toBe(2);
    expect(client.stats.rejectedEvents).toBe(0);
    expect(client.stats.rejectedReplies).toBe(0);

    // The client itself declines a tenant it does not serve (its own scope check, not the
    // server's); that the server refuses the same user globex's tokens is proven on a raw
    // connection, by the server's permission error.
    await expect(client.getAccessToken({ tenant: 'globex', connection: 'jira' })).rejects.toThrow(
      /not served by this client/,
    );
    const raw = await connectAs('svc-acme');
    await expectRefused(raw, tokenGetSubject('globex', 'jira'));
    await expectRefused(raw, adminSubject('describe', 'acme', 'jira'));
    await expectRefused(raw, auditQuerySubject('acme'));
  }, 90_000);

  it('the operator works across tenants', async () => {
    const operator = await connectAs('operator');
    const listed = await call(operator, adminListSubject());
    expect(listed.ok).toBe(true);
    expect(new Set(listed.items.map((c: { tenant: string }) => c.tenant))).toEqual(new Set(['acme', 'globex']));
    // The audit app stores globex's registration asynchronously, from the stream.
    const trail = await waitFor(
      async () => {
        const reply = await call(operator, auditQuerySubject(), { tenant: 'globex' });
        return reply.ok && reply.items.length > 0 ? reply : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(new Set(trail.items.map((r: { tenant: string }) => r.tenant))).toEqual(new Set(['globex']));
    expect(await call(operator, adminSubject('describe', 'globex', 'jira'))).toMatchObject({
      ok: true,
      credential: { tenant: 'globex' },
    });
  }, 60_000);
});
