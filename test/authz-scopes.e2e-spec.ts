/**
 * Consumers of many tenants end to end: the real refresher on a real nats-server under the
 * configuration `tokenctl authz --consumer-scope` generates. A scheduler scoped to every
 * tenant's `twitter` connection gets each tenant's token and its pushed refreshes, and is
 * refused `github` twice over: by its own client (nothing sent) and by the server.
 */
import { connect, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { TokenClient } from '@tokenkeeper/client';
import { adminSubject, encodeJson, tokenGetSubject, type CredentialKey } from '@tokenkeeper/contracts';
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
const TENANTS = ['acme', 'globex', 'initech'];

describe('consumers of many tenants under the generated NATS permissions', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let users: Map<string, GeneratedUser>;
  let operator: NatsConnection;
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

  const register = async (tenant: string, connection: string) =>
    expect(
      await call(operator, adminSubject('register', tenant, connection), {
        provider: 'sandbox',
        ...sandbox.issueTokens(),
        expiresIn: 3600,
      }),
    ).toMatchObject({ ok: true });

  /** The server refuses the request's publish (its permission error, not a timeout): it never reaches the refresher. */
  const expectRefused = async (nc: NatsConnection, subject: string): Promise<void> => {
    const outcome = await nc.request(subject, encodeJson({}), { timeout: REFUSAL_MS }).then(
      () => 'answered',
      (error: unknown) => error,
    );
    const violation = permissionError(outcome);
    expect(violation, `${subject}: ${String(outcome)}`).toBeInstanceOf(PermissionViolationError);
    expect(violation!.operation).toBe('publish');
  };

  /** A subscription the server refuses closes with its subscription permission violation. */
  const expectSubscribeRefused = async (nc: NatsConnection, subject: string): Promise<void> => {
    const sub = nc.subscribe(subject);
    const closed = await Promise.race([
      sub.closed,
      new Promise((resolve) => setTimeout(() => resolve('still open'), REFUSAL_MS)),
    ]);
    expect(closed, `subscribe ${subject}`).toBeInstanceOf(PermissionViolationError);
    expect((closed as PermissionViolationError).operation).toBe('subscription');
  };

  const scopedClient = async (name: string, scopes: string[]): Promise<TokenClient> => {
    const user = users.get(name)!;
    const client = new TokenClient({
      servers: nats.url,
      connectOptions: credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      scopes,
      trustedSigners: [refresher.signerPublicKey],
    });
    clients.push(client);
    await client.start();
    return client;
  };

  /** Refreshes the credential and waits until the client's cache holds the pushed new token, without asking. */
  const expectPushedRefresh = async (client: TokenClient, key: CredentialKey) => {
    const before = await client.getToken(key);
    const fallbacks = client.stats.fallbacks;
    expect(await call(operator, adminSubject('refresh', key.tenant, key.connection))).toMatchObject({ ok: true });
    await waitFor(
      () => client.peekAccessToken(key) !== undefined && client.peekAccessToken(key) !== before.accessToken,
      {
        timeoutMs: 10_000,
      },
    );
    expect((await client.getToken(key)).version).toBe(before.version + 1);
    expect(client.stats.fallbacks).toBe(fallbacks);
  };

  beforeAll(async () => {
    const generated = buildAuthz({
      refresher: true,
      operator: true,
      consumerScope: ['scheduler:*.twitter', 'reports:acme.*'],
    });
    users = new Map(generated.users.map((u) => [u.user.name, u]));
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config: generated.config }),
      createTestDatabase('tk_authz_scopes'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, natsEnvOf(users.get('refresher')!)),
      sandboxProviders(sandbox),
    );
    operator = await connectAs('operator');
    for (const tenant of TENANTS) {
      await register(tenant, 'twitter');
      await register(tenant, 'github');
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it("a scheduler scoped to *.twitter gets every tenant's twitter token and follows their refreshes; github is refused", async () => {
    expect([...users.keys()]).toContain('scope-scheduler');
    const client = await scopedClient('scope-scheduler', ['*.twitter']);
    for (const tenant of TENANTS) {
      expect(await client.getToken({ tenant, connection: 'twitter' })).toMatchObject({
        tenant,
        connection: 'twitter',
        version: 1,
      });
    }
    for (const tenant of TENANTS) await expectPushedRefresh(client, { tenant, connection: 'twitter' });
    expect(client.stats.rejectedEvents).toBe(0);
    expect(client.stats.rejectedReplies).toBe(0);

    // Its own client declines github without sending anything.
    const sent = client.stats.fallbacks;
    for (const tenant of TENANTS) {
      await expect(client.getToken({ tenant, connection: 'github' })).rejects.toMatchObject({ code: 'bad_request' });
    }
    expect(client.stats.fallbacks).toBe(sent);

    // And the server refuses the same user github, for every tenant and through any wildcard.
    const raw = await connectAs('scope-scheduler');
    for (const tenant of TENANTS) await expectRefused(raw, tokenGetSubject(tenant, 'github'));
    await expectRefused(raw, adminSubject('describe', 'acme', 'twitter'));
    // Nor may it hear github's events, or all events of a type, or another client's replies.
    for (const subject of ['token.refreshed.acme.github', 'token.revoked.*.github', 'token.refreshed.*.*', '_INBOX.>'])
      await expectSubscribeRefused(raw, subject);
    // The twitter grant is real on the raw connection too.
    expect(await call(raw, tokenGetSubject('initech', 'twitter'))).toMatchObject({ ok: true });
  }, 90_000);

  it('a consumer scoped to acme.* behaves as a consumer of acme', async () => {
    const client = await scopedClient('scope-reports', ['acme.*']);
    expect(await client.getToken({ tenant: 'acme', connection: 'github' })).toMatchObject({ tenant: 'acme' });
    await expectPushedRefresh(client, { tenant: 'acme', connection: 'github' });
    expect((await client.getToken({ tenant: 'acme', connection: 'twitter' })).tenant).toBe('acme');

    const sent = client.stats.fallbacks;
    for (const connection of ['twitter', 'github']) {
      await expect(client.getToken({ tenant: 'globex', connection })).rejects.toMatchObject({ code: 'bad_request' });
    }
    expect(client.stats.fallbacks).toBe(sent);

    const raw = await connectAs('scope-reports');
    await expectRefused(raw, tokenGetSubject('globex', 'twitter'));
    await expectRefused(raw, tokenGetSubject('initech', 'github'));
    await expectSubscribeRefused(raw, 'token.refreshed.globex.twitter');
  }, 60_000);
});
