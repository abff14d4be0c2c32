/**
 * Onboarding without a reload, through the real services: the refresher runs under a JWT
 * creds file on a nats-server started once in operator mode; a tenant admin and a consumer
 * of a tenant that did not exist when the server started are minted afterwards, and the
 * admin registers a credential while the consumer gets its token and a pushed refresh.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { TokenClient } from '@tokenkeeper/client';
import { adminSubject, encodeJson } from '@tokenkeeper/contracts';
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
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';
import { jwtInit, jwtMint } from '../apps/tokenctl/src/authz-jwt.command.js';

describe('the system under JWT creds minted after the server started', () => {
  let dir: string;
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  const connections: NatsConnection[] = [];
  const clients: TokenClient[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tk-jwt-sys-'));
    const { config } = await jwtInit(dir, [{ kind: 'refresher' }]);
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config }),
      createTestDatabase('tk_authz_jwt'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
        { NATS_CREDS: join(dir, 'refresher.creds'), NATS_INBOX_PREFIX: '_INBOX_refresher' },
      ),
      sandboxProviders(sandbox),
    );
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a new tenant admin registers a credential and a new consumer gets it and its pushed refresh', async () => {
    const adminUser = await jwtMint(dir, { kind: 'tenant-admin', tenant: 'initech' });
    const consumerUser = await jwtMint(dir, { kind: 'consumer', tenant: 'initech', service: 'billing' });
    const admin = await connect({
      servers: nats.url,
      authenticator: credsAuthenticator(readFileSync(adminUser.credsPath)),
      inboxPrefix: adminUser.inboxPrefix,
      noAsyncTraces: true,
    });
    connections.push(admin);
    const call = async (subject: string, body: unknown = {}): Promise<any> =>
      (await admin.request(subject, encodeJson(body), { timeout: 10_000 })).json();
    expect(
      await call(adminSubject('register', 'initech', 'github'), {
        provider: 'sandbox',
        ...sandbox.issueTokens(),
        expiresIn: 3600,
      }),
    ).toMatchObject({ ok: true, credential: { tenant: 'initech', version: 1 } });

    const client = new TokenClient({
      servers: nats.url,
      connectOptions: { authenticator: credsAuthenticator(readFileSync(consumerUser.credsPath)) },
      inboxPrefix: consumerUser.inboxPrefix,
      tenants: ['initech'],
      trustedSigners: [refresher.signerPublicKey],
    });
    clients.push(client);
    await client.start();
    const first = await client.getToken({ tenant: 'initech', connection: 'github' });
    expect(first).toMatchObject({ tenant: 'initech', connection: 'github', version: 1 });
    await call(adminSubject('refresh', 'initech', 'github'));
    await waitFor(() => client.peekAccessToken({ tenant: 'initech', connection: 'github' }) !== first.accessToken, {
      timeoutMs: 10_000,
    });
    expect((await client.getToken({ tenant: 'initech', connection: 'github' })).version).toBe(2);
  });
});
