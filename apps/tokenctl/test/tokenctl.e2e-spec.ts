import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminSubject, auditQuerySubject } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../../refresher/test/refresher.harness.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ENTRY = 'apps/tokenctl/src/main.ts';
/** Each CLI run starts a Node process with SWC (about 1.5 s idle, far more on a busy 2-core machine). */
const CLI_TEST_TIMEOUT_MS = 120_000;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A tokenctl child process, as an operator would run it. */
function startCli(
  args: string[],
  env: Record<string, string>,
): ChildProcess & { out: () => string; err: () => string } {
  const child = spawn(process.execPath, ['--import', '@swc-node/register/esm-register', ENTRY, ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return Object.assign(child, { out: () => stdout, err: () => stderr });
}

function exited(child: ReturnType<typeof startCli>, timeoutMs: number): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tokenctl did not exit within ${timeoutMs} ms; stderr: ${child.err()}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: child.out(), stderr: child.err() });
    });
  });
}

describe('tokenctl against a real refresher', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  let dir: string;
  let env: Record<string, string>;

  const cli = (args: string[], options: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}) => {
    const child = startCli(args, { ...env, ...options.env });
    child.stdin!.end(options.input ?? '');
    return exited(child, options.timeoutMs ?? 60_000);
  };
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_ctl'),
      startSandboxProvider({ accessTokenTtlSeconds: 600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    caller = await RawCaller.connect(nats.url);
    dir = mkdtempSync(join(tmpdir(), 'tokenctl-'));
    env = { NATS_URL: nats.url };
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'registers, gets (masked), describes, lists, refreshes and revokes',
    async () => {
      const tokens = sandbox.issueTokens();
      const accessFile = file('at.txt', `${tokens.accessToken}\n`);
      const reg = await cli(
        [
          'register',
          '--tenant',
          'acme',
          '--connection',
          'github',
          '--provider',
          'sandbox',
          '--access-token-file',
          accessFile,
          '--refresh-token-stdin',
          '--expires-in',
          '3600',
          '--scope',
          'read',
        ],
        { input: `${tokens.refreshToken}\n` },
      );
      expect(reg.code, reg.stderr).toBe(0);
      expect(reg.stdout).toContain('registered acme/github');
      expect(reg.stdout).toMatch(/status:\s+active/);
      for (const output of [reg.stdout, reg.stderr]) {
        expect(output).not.toContain(tokens.accessToken);
        expect(output).not.toContain(tokens.refreshToken);
      }

      const [got, gotJson, shown, described, listed, table] = await Promise.all([
        cli(['get', 'acme', 'github']),
        cli(['get', 'acme', 'github', '--json']),
        cli(['get', 'acme', 'github', '--show-token', '--json']),
        cli(['describe', 'acme', 'github', '--json']),
        cli(['--json', 'list', '--tenant', 'acme']),
        cli(['list', '--tenant', 'acme']),
      ]);
      expect(got.code, got.stderr).toBe(0);
      expect(got.stdout).toMatch(/access token:\s+\*\*\*\*/);
      expect(got.stdout).not.toContain(tokens.accessToken);
      expect(JSON.parse(gotJson.stdout).token).toMatchObject({
        tenant: 'acme',
        connection: 'github',
        version: 1,
        scope: 'read',
      });
      expect(gotJson.stdout).not.toContain(tokens.accessToken);
      expect(JSON.parse(shown.stdout)).toMatchObject({
        ok: true,
        token: { accessToken: tokens.accessToken, version: 1 },
      });
      expect(JSON.parse(described.stdout)).toMatchObject({
        ok: true,
        credential: { status: 'active', version: 1, hasRefreshToken: true },
      });
      const list = JSON.parse(listed.stdout);
      expect(list.items.map((c: { connection: string }) => c.connection)).toEqual(['github']);

      expect(table.stdout.split('\n')[0]).toMatch(/^TENANT\s+CONNECTION\s+PROVIDER\s+STATUS\s+VERSION\s+EXPIRES/);
      expect(table.stdout).toMatch(/acme\s+github\s+sandbox\s+active\s+1\s+in 59m/);
      expect(table.stdout).not.toContain('\u001b[');

      const refreshed = await cli(['refresh', 'acme', 'github', '--json']);
      expect(refreshed.code, refreshed.stderr).toBe(0);
      expect(JSON.parse(refreshed.stdout).credential.version).toBe(2);

      const revoked = await cli(['revoke', 'acme', 'github', '--json']);
      expect(JSON.parse(revoked.stdout)).toEqual({ ok: true, providerRevoked: true });
      const after = await cli(['get', 'acme', 'github']);
      expect(after.code).toBe(1);
      expect(after.stderr).toContain('error revoked');
      expect(after.stderr).toMatch(/hint: .*register it again/);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it('imports 10,000 credentials from a JSONL file with bounded concurrency', async () => {
    const marker = randomBytes(6).toString('hex');
    const lines = Array.from({ length: 10_000 }, (_, i) =>
      JSON.stringify({ tenant: 'bulk', connection: `c${i}`, accessToken: `at_bulk_${marker}_${i}`, expiresIn: 3600 }),
    );
    const path = file('bulk.jsonl', `${lines.join('\n')}\n`);
    const started = Date.now();
    const imported = await cli(['register', '--file', path, '--provider', 'sandbox'], { timeoutMs: 180_000 });
    const seconds = (Date.now() - started) / 1000;
    console.log(`tokenctl: imported 10,000 credentials in ${seconds.toFixed(1)} s (process start included)`);
    expect(imported.code, imported.stderr + imported.stdout).toBe(0);
    expect(imported.stdout).toMatch(/registered 10,000 of 10,000 credentials/);
    expect(imported.stdout + imported.stderr).not.toContain(marker);

    const all = await cli(['list', '--tenant', 'bulk', '--all', '--json'], { timeoutMs: 60_000 });
    expect(all.code, all.stderr).toBe(0);
    const items = JSON.parse(all.stdout).items as { connection: string; version: number; hasAccessToken: boolean }[];
    expect(items).toHaveLength(10_000);
    expect(new Set(items.map((c) => c.connection)).size).toBe(10_000);
    expect(all.stdout).not.toContain(marker);
    const sample = await cli(['describe', 'bulk', 'c7321', '--json']);
    expect(JSON.parse(sample.stdout).credential).toMatchObject({
      provider: 'sandbox',
      version: 1,
      hasAccessToken: true,
      status: 'active',
    });
    expect(sandbox.stats.tokenRequests).toBeLessThan(10);
  }, 300_000);

  it(
    'rejects bad input with exit code 2 and line numbers, before sending anything',
    async () => {
      const path = file(
        'bad.jsonl',
        [
          JSON.stringify({
            tenant: 'bad',
            connection: 'first',
            provider: 'sandbox',
            accessToken: 'at_ok_1',
            expiresIn: 60,
          }),
          '{"tenant": "bad", "connection": "second", "accessToken": at_leaked_secret}',
          '',
          JSON.stringify({ tenant: 'bad.name', connection: 'third', provider: 'sandbox' }),
          JSON.stringify({ tenant: 'bad', connection: 'first', provider: 'sandbox', extra: 1 }),
        ].join('\n'),
      );
      const [missing, badFlag, badName, malformed] = await Promise.all([
        cli(['register', '--tenant', 'acme']),
        cli(['list', '--limit', 'lots']),
        cli(['describe', 'a.b', 'x']),
        cli(['register', '--file', path]),
      ]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain('missing --connection, --provider');
      expect(badFlag.code).toBe(2);
      expect(badFlag.stderr).toContain('--limit must be a whole number');
      expect(badName.code).toBe(2);
      expect(badName.stderr).toContain('tenant must match');
      expect(malformed.code).toBe(2);
      expect(malformed.stderr).toContain(`${path}:2: not valid JSON`);
      expect(malformed.stderr).toContain(`${path}:4: tenant: tenant must match`);
      expect(malformed.stderr).toContain(`${path}:5 bad/first: unknown field extra`);
      expect(malformed.stderr).toContain('nothing was sent');
      expect(malformed.stderr).not.toContain('at_leaked_secret');
      const notSent = await cli(['describe', 'bad', 'first']);
      expect(notSent.code).toBe(1);
      expect(notSent.stderr).toContain('error not_found');
      expect(notSent.stderr).toContain('tokenctl list --tenant bad');
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'reports service errors with exit code 1, code and hint, also per line in a bulk import',
    async () => {
      const accessFile = file('at2.txt', 'at_unknown_provider_token');

      const path = file(
        'mixed.json',
        JSON.stringify(
          [
            { tenant: 'mixed', connection: 'a', provider: 'sandbox', accessToken: 'at_mixed_a', expiresIn: 3600 },
            { tenant: 'mixed', connection: 'b', provider: 'nope', accessToken: 'at_mixed_b', expiresIn: 3600 },
            { tenant: 'mixed', connection: 'c', provider: 'sandbox', accessToken: 'at_mixed_c', expiresIn: 3600 },
          ],
          null,
          2,
        ),
      );
      const [unknown, mixed, summary] = await Promise.all([
        cli([
          'register',
          '--tenant',
          'acme',
          '--connection',
          'x',
          '--provider',
          'nope',
          '--access-token-file',
          accessFile,
        ]),
        cli(['register', '--file', path]),
        cli(['register', '--file', path, '--json']),
      ]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain('error unknown_provider');
      expect(unknown.stderr).toContain('providers file');
      expect(unknown.stderr).not.toContain('at_unknown_provider_token');
      expect(mixed.code).toBe(1);
      expect(mixed.stdout).toContain('registered 2 of 3 credentials');
      expect(mixed.stdout).toMatch(/unknown_provider × 1\n\s+line 9 \(item 2\) mixed\/b:/);
      expect(mixed.stdout).not.toContain('at_mixed');
      expect(JSON.parse(summary.stdout)).toMatchObject({
        ok: false,
        total: 3,
        registered: 2,
        failed: 1,
        failures: { unknown_provider: { count: 1 } },
      });
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'exits 3 with a hint when NATS is down or nothing answers',
    async () => {
      const empty = await startNatsServer();
      try {
        const [down, silent, audit] = await Promise.all([
          cli(['list'], { env: { NATS_URL: 'nats://127.0.0.1:1' } }),
          cli(['describe', 'acme', 'github'], { env: { NATS_URL: empty.url } }),
          cli(['audit'], { env: { NATS_URL: empty.url } }),
        ]);
        expect(down.code).toBe(3);
        expect(down.stderr).toContain('cannot reach NATS at nats://127.0.0.1:1');
        expect(down.stderr).toContain('NATS_URL=nats://127.0.0.1:1');
        expect(silent.code).toBe(3);
        expect(silent.stderr).toContain('no responders');
        expect(silent.stderr).toContain('is the refresher running');
        expect(audit.code).toBe(3);
        expect(audit.stderr).toContain('is the audit service running');
      } finally {
        await empty.stop();
      }
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'watch prints a line per event, masks tokens, and stops on Ctrl-C',
    async () => {
      const human = startCli(['watch', '--tenant', 'watched'], env);
      const json = startCli(['watch', '--json', '--show-secrets'], env);
      // The four event types one by one (permissions name them so), scoped to --tenant.
      await waitFor(
        () =>
          human
            .err()
            .includes(
              'watching token.refreshed.watched.*, token.registered.watched.*, token.failed.watched.*, token.revoked.watched.*',
            ) &&
          json
            .err()
            .includes('watching token.refreshed.*.*, token.registered.*.*, token.failed.*.*, token.revoked.*.*'),
        { timeoutMs: 20_000, message: 'watch started' },
      );

      const accessToken = `at_watch_${randomBytes(8).toString('hex')}`;
      const reg = await caller.call(adminSubject('register', 'watched', 'slack'), {
        provider: 'sandbox',
        accessToken,
        expiresIn: 3600,
      });
      expect(reg.ok).toBe(true);
      await waitFor(() => human.out().includes('watched/slack') && json.out().includes('watched'), {
        message: 'event printed',
      });
      expect(human.out()).toMatch(
        /registered\s+watched\/slack\s+v1\s+sandbox\s+Bearer\s+expires in 59m\s+token \*\*\*\*/,
      );
      expect(human.out()).not.toContain(accessToken);
      const event = JSON.parse(json.out().trim().split('\n')[0]);
      expect(event).toMatchObject({
        subject: 'token.registered.watched.slack',
        kind: 'registered',
        version: 1,
        accessToken,
      });

      human.kill('SIGINT');
      json.kill('SIGINT');
      const [h, j] = await Promise.all([exited(human, 10_000), exited(json, 10_000)]);
      expect(h.code).toBe(0);
      expect(j.code).toBe(0);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'audit sends audit.query.<tenant> per the contract and prints the items',
    async () => {
      const requests: unknown[] = [];
      const record = {
        eventId: '6f1c1c52-2f8a-4c39-9d3c-3d1d7a0f2b11',
        type: 'refreshed',
        tenant: 'acme',
        connection: 'github',
        provider: 'sandbox',
        version: 2,
        outcome: 'ok',
        at: '2025-01-01T00:00:00.000Z',
        replica: 'r1',
      };
      // --tenant goes to the tenant's own subject, so a tenant admin's permissions suffice.
      const sub = caller.nc.subscribe(auditQuerySubject('acme'), {
        queue: 'audit',
        callback: (_e, msg) => {
          requests.push(msg.json());
          msg.respond(JSON.stringify({ ok: true, items: [record] }));
        },
      });
      await caller.nc.flush();
      try {
        const [json, table] = await Promise.all([
          cli(['audit', '--tenant', 'acme', '--type', 'refreshed', '--since', '2h', '--limit', '10', '--json']),
          cli(['audit', '--tenant', 'acme']),
        ]);
        expect(json.code, json.stderr).toBe(0);
        expect(JSON.parse(json.stdout)).toEqual({ ok: true, items: [record] });
        expect(table.stdout).toMatch(/^AT\s+TYPE\s+TENANT/);
        expect(table.stdout).toMatch(/refreshed\s+acme\s+github\s+sandbox\s+2\s+ok/);
        const sent = requests.find((r) => (r as { type?: string }).type === 'refreshed') as Record<string, unknown>;
        expect(sent).toMatchObject({ tenant: 'acme', type: 'refreshed', limit: 10 });
        expect(Date.now() - Date.parse(String(sent.since))).toBeGreaterThan(7_100_000);
      } finally {
        sub.unsubscribe();
      }
    },
    CLI_TEST_TIMEOUT_MS,
  );
});
