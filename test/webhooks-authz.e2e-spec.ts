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
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  it('tokenctl webhook set, list and delete as the tenant admin; another tenant is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-wh-'));
    try {
      const secretFile = join(dir, 'secret');
      writeFileSync(secretFile, `${'b'.repeat(40)}\n`);
      const { NATS_USER, NATS_PASS, NATS_INBOX_PREFIX } = natsEnvOf(users.get('admin-acme')!);
      // Asynchronous: the refresher answering these runs in this very process.
      const cli = (...args: string[]) =>
        new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(
            process.execPath,
            ['--import', '@swc-node/register/esm-register', 'apps/tokenctl/src/main.ts', ...args],
            { env: { ...process.env, NO_COLOR: '1', NATS_URL: nats.url, NATS_USER, NATS_PASS, NATS_INBOX_PREFIX } },
          );
          let stdout = '';
          let stderr = '';
          child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
          child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
          child.once('close', (status) => resolve({ status, stdout, stderr }));
        });
      const set = await cli(
        'webhook',
        'set',
        'acme',
        'ops',
        '--url',
        'https://ops.example.com/tk',
        '--secret-file',
        secretFile,
        '--events',
        'failed,reauth_required',
      );
      expect(set.status, set.stderr).toBe(0);
      const listed = await cli('--json', 'webhook', 'list', 'acme');
      expect(listed.status, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout).items).toContainEqual({
        id: 'ops',
        url: 'https://ops.example.com/tk',
        events: ['failed', 'reauth_required'],
      });
      expect(listed.stdout).not.toContain('b'.repeat(40));
      const table = await cli('webhook', 'list', 'acme');
      expect(table.stdout).toMatch(/ops\s+https:\/\/ops\.example\.com\/tk\s+failed,reauth_required/);
      expect((await cli('webhook', 'list', 'globex')).status).toBe(3);
      expect(
        (
          await cli(
            'webhook',
            'set',
            'acme',
            'ops',
            '--url',
            'https://x.example.com',
            '--secret-file',
            secretFile,
            '--events',
            'stolen',
          )
        ).status,
      ).toBe(2);
      expect((await cli('webhook', 'delete', 'acme', 'ops')).status).toBe(0);
      expect((await cli('webhook', 'delete', 'acme', 'ops')).status).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
