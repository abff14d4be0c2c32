/**
 * "The operator can do everything tokenctl does." A real nats-server runs the
 * configuration `tokenctl authz` generates; the refresher and the audit app run under
 * their own users (own inbox prefixes), and every tokenctl command runs as the `operator`
 * user and exits 0. A tenant admin runs the tenant-scoped commands (tokenctl sends
 * `--tenant` to the tenant's own subjects for exactly this) and is refused the rest.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConnectPerson,
  createTestDatabase,
  freePort,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEnv, startTestAudit, type TestAudit } from '../../audit/test/audit.harness.js';
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../../refresher/test/refresher.harness.js';
import { buildAuthz } from '../src/authz.command.js';
import type { GeneratedUser } from '../src/authz.render.js';
import { natsEnvOf } from './generated-users.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI_TEST_TIMEOUT_MS = 240_000;

function runCli(args: string[], env: Record<string, string>, input = '') {
  const child = spawn(
    process.execPath,
    ['--import', '@swc-node/register/esm-register', 'apps/tokenctl/src/main.ts', ...args],
    {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdin.end(input);
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, done, out: () => stdout, err: () => stderr };
}

describe('tokenctl as the operator user on the permissioned bus', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let auditDb: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: TestAudit;
  let users: Map<string, GeneratedUser>;
  let dir: string;
  let publicPort: number;

  const as = (name: string) => ({ NATS_URL: nats.url, ...natsEnvOf(users.get(name)!) });

  beforeAll(async () => {
    const authz = buildAuthz({ refresher: true, audit: true, operator: true, tenantAdmin: ['acme'] });
    users = new Map(authz.users.map((u) => [u.user.name, u]));
    [nats, db, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config: authz.config }),
      createTestDatabase('tk_ctl_op'),
      createTestDatabase('tk_ctl_op_a'),
      startSandboxProvider({ accessTokenTtlSeconds: 600 }),
    ]);
    publicPort = await freePort();
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
        {
          ...natsEnvOf(users.get('refresher')!),
          PUBLIC_HTTP_PORT: String(publicPort),
          PUBLIC_BASE_URL: `http://127.0.0.1:${publicPort}`,
        },
      ),
      sandboxProviders(sandbox, { authorizationUrl: sandbox.authorizationUrl }),
    );
    audit = await startTestAudit(auditEnv(nats.url, auditDb.url, natsEnvOf(users.get('audit')!)));
    dir = mkdtempSync(join(tmpdir(), 'tokenctl-operator-'));
  });

  afterAll(async () => {
    await audit?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([db?.drop(), auditDb?.drop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'runs every tokenctl command as the operator with exit code 0',
    async () => {
      const operator = as('operator');
      const watch = runCli(['watch', '--json'], operator);
      const scoped = runCli(['watch', '--tenant', 'acme'], operator);
      try {
        await waitFor(() => watch.err().includes('watching') && scoped.err().includes('watching'), {
          timeoutMs: 90_000,
          message: 'both watches started',
        });

        const tokens = sandbox.issueTokens();
        const register = await runCli(
          [
            'register',
            '--tenant',
            'acme',
            '--connection',
            'github',
            '--provider',
            'sandbox',
            '--refresh-token-stdin',
            '--expires-in',
            '3600',
          ],
          operator,
          `${tokens.refreshToken}\n`,
        ).done;
        expect(register.code, register.stderr).toBe(0);
        const bulkFile = join(dir, 'bulk.jsonl');
        writeFileSync(
          bulkFile,
          ['a', 'b', 'c']
            .map((c) => JSON.stringify({ tenant: 'globex', connection: c, accessToken: `at_op_${c}`, expiresIn: 3600 }))
            .join('\n'),
        );

        // The bulk import first: the listings below count what it registered.
        const bulk = await runCli(['register', '--file', bulkFile, '--provider', 'sandbox'], operator).done;
        expect(bulk.code, bulk.stderr).toBe(0);
        const runs = await Promise.all(
          [
            ['get', 'acme', 'github', '--json'],
            ['describe', 'acme', 'github'],
            ['list'],
            ['list', '--tenant', 'acme', '--json'],
            ['list', '--all', '--json'],
            ['refresh', 'acme', 'github'],
          ].map((args) => runCli(args, operator).done.then((r) => ({ args, ...r }))),
        );
        for (const run of runs) expect(run.code, `tokenctl ${run.args.join(' ')}: ${run.stderr}`).toBe(0);
        expect(JSON.parse(runs[3].stdout).items.map((c: { tenant: string }) => c.tenant)).toEqual(['acme']);
        expect(JSON.parse(runs[4].stdout).items).toHaveLength(4);

        // The audit trail, cross-tenant and per tenant: the audit app catches up in a moment.
        await waitFor(
          async () => {
            const [all, acme] = await Promise.all([
              runCli(['audit', '--json'], operator).done,
              runCli(['audit', '--tenant', 'acme', '--json'], operator).done,
            ]);
            expect(all.code, all.stderr).toBe(0);
            expect(acme.code, acme.stderr).toBe(0);
            const types = (JSON.parse(acme.stdout).items as { type: string; tenant: string }[]).map(
              (r) => `${r.tenant}:${r.type}`,
            );
            return (
              types.includes('acme:registered') &&
              types.includes('acme:refreshed') &&
              JSON.parse(all.stdout).items.some((r: { tenant: string }) => r.tenant === 'globex')
            );
          },
          { timeoutMs: 90_000, intervalMs: 500, message: 'audit records of both tenants' },
        );

        const revoke = await runCli(['revoke', 'acme', 'github'], operator).done;
        expect(revoke.code, revoke.stderr).toBe(0);

        // Both watches saw the lifecycle; the scoped one only acme's.
        await waitFor(() => watch.out().includes('"kind":"revoked"') && scoped.out().includes('revoked'), {
          timeoutMs: 20_000,
          message: 'revoked event watched',
        });
        const kinds = watch
          .out()
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { kind: string; tenant: string });
        // acme/github was registered with a refresh token only: no token to announce yet, so its
        // first event is the refresh that follows at once (globex's came with access tokens).
        expect([...new Set(kinds.map((e) => `${e.tenant}:${e.kind}`))]).toEqual(
          expect.arrayContaining(['globex:registered', 'acme:refreshed', 'acme:revoked']),
        );
        expect(scoped.out()).not.toContain('globex');
        // The tokens the operator watched stay masked unless asked.
        expect(watch.out() + scoped.out()).not.toContain('at_op_');
      } finally {
        watch.child.kill('SIGINT');
        scoped.child.kill('SIGINT');
      }
      const [w, s] = await Promise.all([watch.done, scoped.done]);
      expect(w.code, w.stderr).toBe(0);
      expect(s.code, s.stderr).toBe(0);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    "lets a tenant admin run the tenant-scoped commands and refuses it another tenant's and the cross-tenant ones",
    async () => {
      const admin = as('admin-acme');
      const [list, describeIt, auditIt, crossList, crossAudit, foreign, get] = await Promise.all(
        [
          ['list', '--tenant', 'acme', '--json'],
          ['describe', 'acme', 'github', '--json'],
          ['audit', '--tenant', 'acme', '--json'],
          ['list'],
          ['audit'],
          ['describe', 'globex', 'a'],
          ['get', 'acme', 'github'],
        ].map((args) => runCli(args, admin).done),
      );
      expect(list.code, list.stderr).toBe(0);
      expect(JSON.parse(list.stdout).items.every((c: { tenant: string }) => c.tenant === 'acme')).toBe(true);
      // Revoked by the operator in the test above; the admin sees its metadata.
      expect(describeIt.code, describeIt.stderr).toBe(0);
      expect(JSON.parse(describeIt.stdout).credential.status).toBe('revoked');
      expect(auditIt.code, auditIt.stderr).toBe(0);
      for (const [refused, subject] of [
        [crossList, 'tokenkeeper.admin.list'],
        [crossAudit, 'audit.query'],
        [foreign, 'tokenkeeper.admin.describe.globex.a'],
        [get, 'token.get.acme.github'],
      ] as const) {
        expect(refused.code, `${subject}: ${refused.stderr}`).toBe(3);
        expect(refused.stderr).toContain(`NATS denied publish on ${subject}`);
      }
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'a tenant admin connects a credential with tokenctl connect: it may not subscribe to events, so describe polling sees the grant',
    async () => {
      const connecting = runCli(
        ['connect', 'acme', 'crm', '--provider', 'sandbox', '--wait', '60', '--display-name', 'Acme Corp'],
        as('admin-acme'),
      );
      const link = await waitFor(() => /https?:\/\/\S+\/connect\/\S+/.exec(connecting.out())?.[0], {
        timeoutMs: 30_000,
        message: 'the link printed',
      });
      // The person: the link's page and its button, the sandbox's consent page, Allow, back to the callback in the same browser.
      const person = new ConnectPerson();
      expect((await person.openLink(link)).text).toContain('Acme Corp (acme)');
      const page = await person.get(await person.startAt(link));
      const consentId = /name="consent" value="([^"]+)"/.exec(page.text)![1]!;
      const answered = await person.postForm(sandbox.authorizationUrl, { consent: consentId, decision: 'allow' });
      const callback = await person.get(answered.location!);
      expect(callback.status, callback.text).toBe(200);

      const result = await connecting.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain('connected acme/crm (sandbox)');
      const described = await runCli(['describe', 'acme', 'crm', '--json'], as('admin-acme')).done;
      expect(JSON.parse(described.stdout).credential).toMatchObject({
        status: 'active',
        version: 1,
        hasRefreshToken: true,
      });
    },
    CLI_TEST_TIMEOUT_MS,
  );
});
