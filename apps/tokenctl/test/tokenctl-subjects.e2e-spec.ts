/**
 * Every tokenctl command on its the wire contract subject, checked against a raw nats.js responder
 * (no refresher): the subject names the credential, the payload carries what it may
 * (names, when present, equal the subject's), and `watch` subscribes to the four event
 * types one by one. What the refresher does with the requests is tokenctl.e2e-spec.ts's.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { encodeJson } from '@tokenkeeper/contracts';
import { startNatsServer, waitFor, type NatsServerHandle } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuthz } from '../src/authz.command.js';
import type { GeneratedUser } from '../src/authz.render.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI_TEST_TIMEOUT_MS = 240_000;

interface Seen {
  subject: string;
  body: Record<string, unknown>;
}

function runCli(args: string[], env: Record<string, string>) {
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
  child.stdin.end('');
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, done, out: () => stdout, err: () => stderr };
}

const credential = (tenant: string, connection: string) => ({
  tenant,
  connection,
  provider: 'sandbox',
  status: 'active',
  version: 1,
  expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
  hasAccessToken: true,
  hasRefreshToken: true,
  failures: 0,
});

describe('tokenctl: the wire contract subjects (raw responder)', () => {
  let nats: NatsServerHandle;
  let responder: NatsConnection;
  const seen: Seen[] = [];

  function answer(msg: Msg): void {
    const body = msg.data.length ? (msg.json() as Record<string, unknown>) : {};
    seen.push({ subject: msg.subject, body });
    const [, second, third, tenant, connection] = msg.subject.split('.');
    let reply: unknown;
    if (msg.subject.startsWith('token.get.')) {
      reply = {
        ok: true,
        token: {
          tenant: third,
          connection: tenant,
          provider: 'sandbox',
          accessToken: 'at_raw_secret_1234567890',
          tokenType: 'Bearer',
          expiresAt: new Date(Date.now() + 600_000).toISOString(),
          version: 3,
        },
      };
    } else if (msg.subject.startsWith('audit.query')) {
      reply = { ok: true, items: [] };
    } else if (second === 'admin' && third === 'list') {
      reply = { ok: true, items: [credential(tenant ?? 'any', 'github')] };
    } else if (second === 'admin' && third === 'revoke') {
      reply = { ok: true, providerRevoked: false };
    } else {
      reply = { ok: true, credential: credential(tenant!, connection!) };
    }
    msg.respond(encodeJson(reply));
  }

  beforeAll(async () => {
    nats = await startNatsServer();
    responder = await connect({ servers: nats.url });
    for (const subject of ['token.get.>', 'tokenkeeper.admin.>', 'audit.query', 'audit.query.>']) {
      responder.subscribe(subject, { queue: 'refresher', callback: (_e, msg) => answer(msg) });
    }
    await responder.flush();
  });

  afterAll(async () => {
    await responder?.close();
    await nats?.stop();
  });

  it(
    'sends get, register, describe, refresh, revoke, list and audit on the subjects that name the credential',
    async () => {
      const env = { NATS_URL: nats.url };
      const runs = await Promise.all(
        [
          ['get', 'acme', 'github', '--min-ttl', '60', '--json'],
          [
            'register',
            '--tenant',
            'acme',
            '--connection',
            'slack',
            '--provider',
            'sandbox',
            '--refresh-token-stdin',
            '--json',
          ],
          ['describe', 'acme', 'github', '--json'],
          ['refresh', 'acme', 'github', '--json'],
          ['revoke', 'globex', 'jira', '--json'],
          ['list', '--tenant', 'acme', '--json'],
          ['list', '--json'],
          ['audit', '--tenant', 'acme', '--type', 'refreshed', '--json'],
          ['audit', '--json'],
        ].map((args) => runCli(args, env).done),
      );
      // register --refresh-token-stdin read nothing from an empty stdin: a usage error, nothing sent.
      const [get, register, ...rest] = runs;
      expect(get.code, get.stderr).toBe(0);
      expect(JSON.parse(get.stdout).token.accessToken).not.toBe('at_raw_secret_1234567890');
      expect(register.code).toBe(2);
      for (const run of rest) expect(run.code, run.stderr).toBe(0);

      const bySubject = new Map(seen.map((s) => [s.subject, s.body]));
      expect([...bySubject.keys()].sort()).toEqual(
        [
          'audit.query',
          'audit.query.acme',
          'token.get.acme.github',
          'tokenkeeper.admin.describe.acme.github',
          'tokenkeeper.admin.list',
          'tokenkeeper.admin.list.acme',
          'tokenkeeper.admin.refresh.acme.github',
          'tokenkeeper.admin.revoke.globex.jira',
        ].sort(),
      );
      // token.get carries only its options (`{minTtlSeconds?, rejectedVersion?}`).
      expect(bySubject.get('token.get.acme.github')).toEqual({ minTtlSeconds: 60 });
      // Admin payloads may name the credential; when they do, it is the subject's.
      expect(bySubject.get('tokenkeeper.admin.revoke.globex.jira')).toEqual({ tenant: 'globex', connection: 'jira' });
      expect(bySubject.get('audit.query.acme')).toEqual({ tenant: 'acme', type: 'refreshed' });
      expect(bySubject.get('tokenkeeper.admin.list')).toEqual({});
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'register (single and bulk) goes to tokenkeeper.admin.register.<tenant>.<connection>',
    async () => {
      seen.length = 0;
      const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
      const { join } = await import('node:path');
      const { tmpdir } = await import('node:os');
      const dir = mkdtempSync(join(tmpdir(), 'tokenctl-subjects-'));
      try {
        const at = join(dir, 'at.txt');
        writeFileSync(at, 'at_single_secret\n');
        const bulk = join(dir, 'bulk.jsonl');
        writeFileSync(
          bulk,
          ['a', 'b']
            .map((c) => JSON.stringify({ tenant: 'initech', connection: c, accessToken: `at_${c}`, expiresIn: 60 }))
            .join('\n'),
        );
        const [single, many] = await Promise.all([
          runCli(
            [
              'register',
              '--tenant',
              'acme',
              '--connection',
              'slack',
              '--provider',
              'sandbox',
              '--access-token-file',
              at,
              '--json',
            ],
            { NATS_URL: nats.url },
          ).done,
          runCli(['register', '--file', bulk, '--provider', 'sandbox'], { NATS_URL: nats.url }).done,
        ]);
        expect(single.code, single.stderr).toBe(0);
        expect(many.code, many.stderr + many.stdout).toBe(0);
        expect(seen.map((s) => s.subject).sort()).toEqual([
          'tokenkeeper.admin.register.acme.slack',
          'tokenkeeper.admin.register.initech.a',
          'tokenkeeper.admin.register.initech.b',
        ]);
        expect(seen.find((s) => s.subject.endsWith('acme.slack'))!.body).toMatchObject({
          tenant: 'acme',
          connection: 'slack',
          provider: 'sandbox',
          accessToken: 'at_single_secret',
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'watch subscribes to the four event types one by one, scoped to --tenant',
    async () => {
      const watch = runCli(['watch', '--tenant', 'acme', '--json'], { NATS_URL: nats.url });
      try {
        await waitFor(() => watch.err().includes('watching'), { timeoutMs: 90_000, message: 'watch started' });
        expect(watch.err()).toContain(
          'watching token.refreshed.acme.*, token.registered.acme.*, token.failed.acme.*, token.revoked.acme.*',
        );
        const event = { eventId: 'e1', tenant: 'acme', connection: 'github', provider: 'sandbox', version: 4 };
        responder.publish('token.revoked.acme.github', encodeJson(event));
        responder.publish('token.revoked.globex.github', encodeJson({ ...event, tenant: 'globex' }));
        responder.publish(
          'token.registered.acme.github',
          encodeJson({ ...event, version: 5, accessToken: 'at_watch_secret_1234567890', tokenType: 'Bearer' }),
        );
        await waitFor(() => watch.out().trim().split('\n').length >= 2, {
          timeoutMs: 10_000,
          message: 'two events printed',
        });
        const lines = watch
          .out()
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { subject: string; accessToken?: string });
        expect(lines.map((l) => l.subject)).toEqual(['token.revoked.acme.github', 'token.registered.acme.github']);
        expect(lines[1].accessToken).not.toBe('at_watch_secret_1234567890');
      } finally {
        watch.child.kill('SIGINT');
      }
      // Reached only when the watch ran: Ctrl-C ends it with 0.
      expect((await watch.done).code).toBe(0);
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'watch prints an access token only masked, also one that arrives as something other than a string',
    async () => {
      const watch = runCli(['watch', '--tenant', 'acme'], { NATS_URL: nats.url });
      try {
        await waitFor(() => watch.err().includes('watching'), { timeoutMs: 90_000, message: 'watch started' });
        const event = {
          eventId: 'e2',
          tenant: 'acme',
          connection: 'github',
          provider: 'sandbox',
          version: 6,
          tokenType: 'Bearer',
        };
        responder.publish(
          'token.registered.acme.github',
          encodeJson({ ...event, accessToken: ['at_array_secret_123456'] }),
        );
        responder.publish(
          'token.refreshed.acme.github',
          encodeJson({ ...event, version: 7, accessToken: 'at_string_secret_123456' }),
        );
        await waitFor(() => watch.out().trim().split('\n').length >= 2, {
          timeoutMs: 10_000,
          message: 'two events printed',
        });
        expect(watch.out()).toContain('acme/github  v7  sandbox');
        expect(watch.out()).not.toContain('at_array_secret');
        expect(watch.out()).not.toContain('at_string_secret_123456');
      } finally {
        watch.child.kill('SIGINT');
      }
      expect((await watch.done).code).toBe(0);
    },
    CLI_TEST_TIMEOUT_MS,
  );
});

/**
 * The same commands on a nats-server running `tokenctl authz` output, with the raw
 * responder as the refresher and audit users: a tenant admin reaches its tenant through
 * the `--tenant` subjects, and a refusal is reported as the server's (exit 3).
 */
describe('tokenctl: subjects under the generated permissions (raw responder)', () => {
  let nats: NatsServerHandle;
  const services: NatsConnection[] = [];
  let users: Map<string, GeneratedUser>;
  const envOf = (name: string) => {
    const { user, credential } = users.get(name)!;
    if (credential.kind !== 'password') throw new Error('password users expected');
    return {
      NATS_URL: nats.url,
      NATS_USER: user.name,
      NATS_PASS: credential.password,
      NATS_INBOX_PREFIX: user.inboxPrefix,
    };
  };

  beforeAll(async () => {
    const authz = buildAuthz({ refresher: true, audit: true, operator: true, tenantAdmin: ['acme'] });
    users = new Map(authz.users.map((u) => [u.user.name, u]));
    nats = await startNatsServer({ config: authz.config });
    const serve = async (name: string, subjects: string[]) => {
      const env = envOf(name);
      const nc = await connect({
        servers: nats.url,
        user: env.NATS_USER,
        pass: env.NATS_PASS,
        inboxPrefix: env.NATS_INBOX_PREFIX,
      });
      for (const subject of subjects)
        nc.subscribe(subject, {
          queue: name,
          callback: (_e, msg) => void msg.respond(encodeJson({ ok: true, items: [], subject: msg.subject })),
        });
      await nc.flush();
      services.push(nc);
    };
    await serve('refresher', ['token.get.>', 'tokenkeeper.admin.>']);
    await serve('audit', ['audit.query', 'audit.query.>']);
  });

  afterAll(async () => {
    for (const nc of services) await nc.close();
    await nats?.stop();
  });

  it(
    'a tenant admin lists and queries its tenant; the cross-tenant list is refused by the server',
    async () => {
      const admin = envOf('admin-acme');
      const [list, auditIt, crossList, foreign, get, opList] = await Promise.all([
        runCli(['list', '--tenant', 'acme', '--json'], admin).done,
        runCli(['audit', '--tenant', 'acme', '--json'], admin).done,
        runCli(['list'], admin).done,
        runCli(['list', '--tenant', 'globex'], admin).done,
        runCli(['get', 'acme', 'github'], admin).done,
        runCli(['list', '--json'], envOf('operator')).done,
      ]);
      expect(list.code, list.stderr).toBe(0);
      expect(JSON.parse(list.stdout).subject).toBe('tokenkeeper.admin.list.acme');
      expect(auditIt.code, auditIt.stderr).toBe(0);
      expect(JSON.parse(auditIt.stdout).subject).toBe('audit.query.acme');
      expect(opList.code, opList.stderr).toBe(0);
      expect(JSON.parse(opList.stdout).subject).toBe('tokenkeeper.admin.list');
      for (const [refused, subject] of [
        [crossList, 'tokenkeeper.admin.list'],
        [foreign, 'tokenkeeper.admin.list.globex'],
        [get, 'token.get.acme.github'],
      ] as const) {
        expect(refused.code, `${subject}: ${refused.stderr}`).toBe(3);
        expect(refused.stderr).toContain(`NATS denied publish on ${subject}`);
      }
    },
    CLI_TEST_TIMEOUT_MS,
  );

  it(
    'the operator watches the four event types (a wildcard type would be refused)',
    async () => {
      const watch = runCli(['watch', '--json'], envOf('operator'));
      try {
        await waitFor(() => watch.err().includes('watching'), { timeoutMs: 90_000, message: 'watch started' });
        const event = { eventId: 'e1', tenant: 'acme', connection: 'github', provider: 'sandbox', version: 4 };
        services[0].publish('token.revoked.acme.github', encodeJson(event));
        await waitFor(() => watch.out().includes('token.revoked.acme.github'), {
          timeoutMs: 10_000,
          message: 'event printed',
        });
      } finally {
        watch.child.kill('SIGINT');
      }
      const done = await watch.done;
      expect(done.code, done.stderr).toBe(0);
      expect(done.stderr).not.toContain('denied');
    },
    CLI_TEST_TIMEOUT_MS,
  );
});
