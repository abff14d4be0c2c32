import 'reflect-metadata';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { AUDIT_ENV_VARIABLES } from '../../audit/src/config/audit-config.js';
import { ENV_VARIABLES } from '../src/config/app-config.js';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { authzUser, type AuthzRole, WireSubscription } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  freePort,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAuditConfig } from '../../audit/src/config/audit-config.js';
import { loadConfig } from '../src/config/app-config.js';
import { HealthController } from '../src/observability/health.controller.js';
import { sandboxProviders, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';
import { baseUrlOf, REPO_ROOT } from './ops-support.js';
import {
  COMPOSE_AUTH_FILE,
  COMPOSE_AUTHZ_FLAGS,
  composeAuth,
  passwordVariable,
} from '../../../tools/nats-compose-auth.js';

/**
 * docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine:
 * every environment variable a service sets is one its app reads (and the values pass
 * its validation), every command and file they name exists, and every healthcheck is
 * run for real against the thing it probes.
 */

const file = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
const compose = parse(file('docker-compose.yml'), { merge: true });
const dockerfile = file('Dockerfile');
const packageJson = JSON.parse(file('package.json'));
const run = promisify(execFile);

/** Compose interpolation as `docker compose` does it with an empty environment: `${X:-d}` → d, `${X}` → ''. */
function interpolate(value: unknown): string {
  return String(value).replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_, _name, fallback) => fallback ?? '');
}

function envOf(service: string): Record<string, string> {
  const env = compose.services[service].environment ?? {};
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(v)]));
}

/** A compose value's `${VAR:-default}` reference: the variable, or undefined for a literal. */
function referencedVariable(service: string, name: string): string | undefined {
  return /^\$\{([A-Z0-9_]+)(?::-[^}]*)?\}$/.exec(String(compose.services[service].environment?.[name] ?? ''))?.[1];
}

interface ConfigUser {
  user: string;
  password: string;
  permissions: { publish: { allow: string[] }; subscribe: { allow: string[] }; allow_responses?: boolean };
}

/** The inverse of passwordVariable: a letter or digit as itself (lower case), `__` a `-`, `_0` a `_`, `_X` an upper-case X. */
function readPasswordVariable(variable: string): string {
  const code = variable.slice('TK_NATS_PASS_'.length);
  let name = '';
  for (let i = 0; i < code.length; i++) {
    const c = code[i]!;
    if (c !== '_') name += c.toLowerCase();
    else {
      const next = code[++i]!;
      name += next === '_' ? '-' : next === '0' ? '_' : next;
    }
  }
  return name;
}

/** The host file the nats service's `-c` names, through its read-only mount. */
function composeNatsConfigFile(): string {
  const args: string[] = compose.services.nats.command;
  const configPath = args[args.indexOf('-c') + 1]!;
  const mount = (compose.services.nats.volumes as string[])
    .map((v) => v.split(':'))
    .find(([, target]) => configPath.startsWith(`${target}/`));
  expect(mount, `nats: ${configPath} is mounted`).toBeDefined();
  expect(mount![2]).toBe('ro');
  return join(mount![0]!, configPath.slice(mount![1]!.length + 1)).replace(/^\.\//, '');
}

/** The users of the committed nats-server config; a `$VAR` password comes back as the string "$VAR". */
function natsConfigUsers(text: string): ConfigUser[] {
  const body = text
    .split('\n')
    .filter((line) => !line.trim().startsWith('#'))
    .join('\n');
  const array = /users = (\[[\s\S]*\])\s*\}\s*$/.exec(body)![1].replace(/: \$([A-Z0-9_]+)/g, ': "$$$1"');
  return JSON.parse(array) as ConfigUser[];
}

/** The variables a healthcheck script reads besides the app's own. */
function healthcheckVariables(): Set<string> {
  return new Set([...file('deploy/healthcheck.mjs').matchAll(/env\.([A-Z0-9_]+)/g)].map((m) => m[1]));
}

/** The variables an app's configuration reads, as its config module declares them. */
function schemaVariables(sourcePath: string): Set<string> {
  const names = new Set(sourcePath.includes('audit') ? AUDIT_ENV_VARIABLES : ENV_VARIABLES);
  expect(names.size).toBeGreaterThan(5);
  return names;
}

/** `${VAR}` references of a providers file: the refresher resolves them from its environment. */
function providersFileVariables(path: string): Set<string> {
  return new Set([...file(path).matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]));
}

function healthcheckOf(service: string): string[] {
  const test = compose.services[service].healthcheck?.test;
  expect(Array.isArray(test) && test[0] === 'CMD', `${service}: healthcheck is an exec-form CMD`).toBe(true);
  return test.slice(1);
}

function dockerfileHealthcheck(): string[] {
  const match = /^HEALTHCHECK[^\n]*(?:\\\n[^\n]*)*?CMD (\[.*\])\s*$/m.exec(dockerfile);
  if (!match) throw new Error('no HEALTHCHECK ... CMD [...] in the Dockerfile');
  return JSON.parse(match[1]);
}

function httpRoutes(controller: new (...args: never[]) => unknown): Set<string> {
  const proto = controller.prototype as Record<string, unknown>;
  const routes = Object.getOwnPropertyNames(proto)
    .map((name) => Reflect.getMetadata('path', proto[name] as object) as string | undefined)
    .filter((path): path is string => typeof path === 'string');
  return new Set(routes.map((path) => `/${path.replace(/^\//, '')}`));
}

/** Runs a healthcheck command from /work/main as Docker would from /app; resolves to its exit code. */
async function probe(argv: string[], env: Record<string, string>): Promise<number> {
  expect(argv[0]).toBe('node');
  try {
    await run(process.execPath, argv.slice(1), {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      timeout: 15_000,
    });
    return 0;
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

function composeCli(): string[] | null {
  for (const argv of [['docker', 'compose'], ['docker-compose']]) {
    try {
      execFileSync(argv[0], [...argv.slice(1), 'version'], { stdio: 'ignore' });
      return argv;
    } catch {
      // not available
    }
  }
  return null;
}

describe('ops: docker-compose.yml and Dockerfile', () => {
  it('runs PostgreSQL 15, NATS 2.10 with JetStream, the refresher and the audit app, with volumes for their data', () => {
    const { services, volumes } = compose;
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['postgres', 'nats', 'refresher', 'audit']));
    expect(services.postgres.image).toMatch(/^postgres:15(\b|$)/);
    expect(services.nats.image).toMatch(/^nats:2\.10(\b|$)/);
    const natsArgs: string[] = services.nats.command;
    expect(natsArgs).toContain('-js');
    // The server's configuration, mounted read-only from deploy/nats, includes the permission model's.
    const configFile = composeNatsConfigFile();
    expect(dirname(configFile)).toBe(dirname(COMPOSE_AUTH_FILE));
    const included = [...file(configFile).matchAll(/^\s*include\s+"?([^"\s]+)"?/gm)].map((m) =>
      join(dirname(configFile), m[1]!),
    );
    expect(included).toEqual([COMPOSE_AUTH_FILE]);
    const storeDir = natsArgs[natsArgs.indexOf('-sd') + 1];
    const mounted = (service: string) =>
      (services[service].volumes as string[]).map((v) => v.split(':')) as [string, string][];
    expect(mounted('postgres')).toContainEqual([expect.any(String), '/var/lib/postgresql/data']);
    expect(mounted('nats').some(([, target]) => storeDir.startsWith(target))).toBe(true);
    for (const service of ['postgres', 'nats', 'refresher']) {
      for (const [source] of mounted(service)) {
        if (!source.startsWith('./'))
          expect(Object.keys(volumes), `${service}: named volume ${source}`).toContain(source);
      }
    }
    // Every app waits for healthy dependencies.
    for (const service of ['refresher', 'audit']) {
      expect(services[service].depends_on).toEqual({
        postgres: { condition: 'service_healthy' },
        nats: { condition: 'service_healthy' },
      });
    }
  });

  it('sets only variables the refresher reads, with values its configuration accepts', () => {
    const env = envOf('refresher');
    const known = new Set([
      ...schemaVariables('apps/refresher/src/config/app-config.ts'),
      ...providersFileVariables(env.PROVIDERS_FILE),
    ]);
    for (const name of Object.keys(env)) expect(known, `refresher: ${name}`).toContain(name);
    expect(existsSync(join(REPO_ROOT, env.PROVIDERS_FILE))).toBe(true);
    const config = loadConfig(env);
    expect(config.nats.servers).toEqual(['nats://nats:4222']);
    expect(new URL(config.database.url).hostname).toBe('postgres');
    // The published port and the container port are HTTP_PORT.
    expect(compose.services.refresher.ports.map((p: string) => p.split(':').at(-1))).toContain(env.HTTP_PORT);
    // Compose waits longer than the shutdown may take: the grace period plus main.ts's 15 s for the rest.
    const stopMs = Number(/^(\d+)s$/.exec(compose.services.refresher.stop_grace_period)![1]) * 1000;
    expect(stopMs).toBeGreaterThan(config.shutdownGraceMs + 15_000);
  });

  it('sets only variables the audit app reads, with values its configuration accepts', () => {
    const env = envOf('audit');
    const known = new Set([...schemaVariables('apps/audit/src/config/audit-config.ts'), ...healthcheckVariables()]);
    for (const name of Object.keys(env)) expect(known, `audit: ${name}`).toContain(name);
    const config = loadAuditConfig(env);
    expect(config.nats.servers).toEqual(['nats://nats:4222']);
    expect(new URL(config.database.url).hostname).toBe('postgres');
  });

  it('starts every app with a compiled entry point whose source exists', () => {
    const refresherArgv: string[] = compose.services.refresher.command;
    expect(refresherArgv.join(' ')).toBe(packageJson.scripts['start:prod']);
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]) as string[];
    expect(cmd).toEqual(refresherArgv);
    expect(dockerfile).toMatch(/^RUN npm run build$/m);
    for (const service of ['refresher', 'audit', 'sandbox']) {
      const argv = compose.services[service].command as string[];
      expect(argv[0], service).toBe('node');
      const entry = /^dist\/(apps\/[a-z-]+\/src\/main)\.js$/.exec(argv[1]);
      expect(entry, `${service}: ${argv[1]}`).not.toBeNull();
      expect(existsSync(join(REPO_ROOT, `${entry![1]}.ts`)), `${service}: ${entry![1]}.ts`).toBe(true);
      expect(file('tools/build.ts'), `${service}: compiled by npm run build`).toContain(
        `'${entry![1].replace(/\/main$/, '')}'`,
      );
    }
  });

  it('builds a multi-stage image that runs as a non-root user, from a context without secrets or node_modules', () => {
    const stages = [...dockerfile.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gm)];
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(/^ARG NODE_IMAGE=(node:(22|24)(-trixie|-bookworm)?-slim)$/m.exec(dockerfile)).not.toBeNull();
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    const user = /^USER (\S+)$/m.exec(dockerfile)?.[1];
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    // What the image copies exists and is not ignored.
    const ignored = file('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const [, sources] of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const source of sources.split(' ')) {
        expect(existsSync(join(REPO_ROOT, source)), `COPY ${source}`).toBe(true);
        expect(ignored, `COPY ${source} is not in .dockerignore`).not.toContain(source);
      }
    }
    for (const entry of ['**/node_modules', '.git', '.tokenkeeper', '**/.env']) expect(ignored).toContain(entry);
    expect(dockerfileHealthcheck()).toEqual(['node', 'deploy/healthcheck.mjs', 'http', '/healthz']);
  });

  it('runs NATS with exactly the permissions `tokenctl authz` generates (regenerated and compared)', () => {
    // `npm run authz:compose` writes the file; any hand edit or model change shows here.
    expect(file(COMPOSE_AUTH_FILE)).toBe(composeAuth().config);
    const users = natsConfigUsers(file(COMPOSE_AUTH_FILE));
    // Parsed back, each user holds its role's permissions as the contract's model has them.
    const roles: AuthzRole[] = [
      { kind: 'refresher' },
      { kind: 'audit' },
      { kind: 'operator' },
      { kind: 'tenant-admin', tenant: 'healthcheck' },
      ...COMPOSE_AUTHZ_FLAGS.consumer!.map((c) => ({
        kind: 'consumer' as const,
        tenant: c.split(':')[0],
        service: c.split(':')[1],
      })),
    ];
    expect(users.map((u) => u.user).sort()).toEqual(roles.map((r) => authzUser(r).name).sort());
    for (const role of roles) {
      const model = authzUser(role);
      const user = users.find((u) => u.user === model.name)!;
      expect(user.permissions.publish.allow, model.name).toEqual(model.permissions.publish);
      expect(user.permissions.subscribe.allow, model.name).toEqual(model.permissions.subscribe);
      expect(user.permissions.allow_responses ?? false, model.name).toBe(model.permissions.allowResponses);
      // No password in the file: a reference to the nats container's environment.
      expect(user.password, model.name).toMatch(/^\$TK_NATS_PASS_[A-Z0-9_]+$/);
    }
    // No consumer may read another tenant's or every inbox.
    for (const user of users) expect(user.permissions.subscribe.allow, user.user).not.toContain('_INBOX.>');
  });

  it('gives different user names different password variables (a-b, a_b and A-b never share one)', () => {
    const colliding = [
      ['a-b', 'a_b'],
      ['Acme', 'acme'],
      ['svc-acme_-billing', 'svc-acme-billing'],
      ['a__b', 'a-b'],
      ['a_0b', 'a_b0'],
    ];
    for (const [one, other] of colliding)
      expect(passwordVariable(one!), `${one} / ${other}`).not.toBe(passwordVariable(other!));
    const names = [
      'a',
      'A',
      '0',
      '-',
      '_',
      'a-b',
      'a_b',
      'A-B',
      'a--b',
      'a__b',
      'a_-b',
      'a-_b',
      '_0',
      '__',
      'svc-acme-billing',
      'svc-acme_-billing',
    ];
    const variables = new Map<string, string>();
    for (const name of names) {
      const variable = passwordVariable(name);
      expect(variable).toMatch(/^TK_NATS_PASS_[A-Z0-9_]+$/);
      expect(variables.get(variable) ?? name, variable).toBe(name);
      variables.set(variable, name);
      expect(readPasswordVariable(variable)).toBe(name);
    }
    expect(passwordVariable('svc-acme-billing')).toBe('TK_NATS_PASS_SVC__ACME__BILLING');
  });

  it('gives every service its own NATS user, password variable and inbox prefix, all defined for nats-server', () => {
    const users = natsConfigUsers(file(COMPOSE_AUTH_FILE));
    const natsEnv = envOf('nats');
    // Every variable the config references is set for nats-server (else it refuses to start).
    for (const user of users) expect(Object.keys(natsEnv), user.user).toContain(user.password.slice(1));
    const wiring: [service: string, prefix: '' | 'HEALTHCHECK_', role: AuthzRole][] = [
      ['refresher', '', { kind: 'refresher' }],
      ['audit', '', { kind: 'audit' }],
      ['audit', 'HEALTHCHECK_', { kind: 'tenant-admin', tenant: 'healthcheck' }],
    ];
    for (const [service, prefix, role] of wiring) {
      const env = envOf(service);
      const model = authzUser(role);
      const what = `${service}: ${prefix}NATS_USER`;
      expect(env[`${prefix}NATS_USER`], what).toBe(model.name);
      expect(env[`${prefix}NATS_INBOX_PREFIX`], what).toBe(model.inboxPrefix);
      const user = users.find((u) => u.user === model.name)!;
      // The service's password is the same variable nats-server reads, with the same default.
      const variable = referencedVariable(service, `${prefix}NATS_PASS`);
      expect(variable, `${service}: ${prefix}NATS_PASS references a variable`).toBe(user.password.slice(1));
      expect(env[`${prefix}NATS_PASS`], `${service}: ${prefix}NATS_PASS default`).toBe(natsEnv[variable!]);
    }
    // Production needs the signing key: the refresher passes it through.
    expect(referencedVariable('refresher', 'EVENT_SIGNING_KEY')).toBe('EVENT_SIGNING_KEY');
    expect(envOf('refresher').EVENT_SIGNING_KEY_FILE).toMatch(/^\/var\/lib\/tokenkeeper\//);
  });

  const cli = composeCli();
  it.skipIf(cli === null)('is a valid compose file for the compose CLI (`config`, no engine needed)', async () => {
    const [bin, ...args] = cli!;
    const { stdout } = await run(bin, [...args, '-f', join(REPO_ROOT, 'docker-compose.yml'), 'config', '--services'], {
      cwd: REPO_ROOT,
    });
    expect(stdout.split('\n').filter(Boolean)).toEqual(
      expect.arrayContaining(['postgres', 'nats', 'refresher', 'audit']),
    );
  });
});

describe('ops: the healthchecks, run against what they probe', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let responder: NatsConnection;

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_compose'),
      startSandboxProvider(),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
  });

  afterAll(async () => {
    await responder?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('probes routes the refresher serves: the image (/healthz) and compose (/readyz) healthchecks pass, and fail with nothing listening', async () => {
    const routes = httpRoutes(HealthController);
    const port = new URL(baseUrlOf(refresher.app)).port;
    for (const argv of [dockerfileHealthcheck(), healthcheckOf('refresher')]) {
      expect(argv.slice(0, 3)).toEqual(['node', 'deploy/healthcheck.mjs', 'http']);
      expect(routes).toContain(argv[3]);
      expect(await probe(argv, { HTTP_PORT: port }), argv.join(' ')).toBe(0);
      expect(
        await probe(argv, { HTTP_PORT: String(await freePort()) }),
        `${argv.join(' ')} with nothing listening`,
      ).toBe(1);
    }
  });

  it('probes the subject the audit app answers, as the audit service would on the permissioned bus', async () => {
    const argv = healthcheckOf('audit');
    expect(argv.slice(0, 3)).toEqual(['node', 'deploy/healthcheck.mjs', 'nats']);
    // A tenant's audit.query, which the audit app serves on audit.query.*.
    expect(argv[3]).toBe('audit.query.healthcheck');
    expect(WireSubscription.auditQueryOfTenant).toBe('audit.query.*');
    const { AuditQueryController } = await import('../../audit/src/query/audit-query.controller.js');
    const patterns = Object.getOwnPropertyNames(AuditQueryController.prototype).flatMap(
      (name) =>
        (Reflect.getMetadata('microservices:pattern', (AuditQueryController.prototype as any)[name]) as
          unknown[] | undefined) ?? [],
    );
    expect(patterns).toContain(WireSubscription.auditQueryOfTenant);

    const secure = await startComposeNats();
    try {
      const env = { ...envOf('audit'), NATS_URL: secure.url };
      expect(await probe(argv, env), 'no audit replica answering').toBe(1);
      // A stand-in audit replica under the audit service's own compose credentials.
      const audit = envOf('audit');
      responder = await connect({
        servers: secure.url,
        user: audit.NATS_USER,
        pass: audit.NATS_PASS,
        inboxPrefix: audit.NATS_INBOX_PREFIX,
      });
      responder.subscribe(WireSubscription.auditQueryOfTenant, {
        queue: 'audit',
        callback: (_err, msg) => void msg.respond('{"ok":true,"items":[]}'),
      });
      await responder.flush();
      expect(await probe(argv, env), 'an audit replica answers').toBe(0);
      // The audit user itself may not send the query: that is why the probe has its own user.
      const withoutProbeUser = Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('HEALTHCHECK_')));
      expect(await probe(argv, withoutProbeUser), 'as the audit user').toBe(1);
    } finally {
      await responder?.close();
      await secure.stop();
    }
  });

  it('starts nats-server from the committed configuration with the compose environment; each service user connects', async () => {
    const secure = await startComposeNats();
    try {
      for (const service of ['refresher', 'audit']) {
        const env = envOf(service);
        const nc = await connect({
          servers: secure.url,
          user: env.NATS_USER,
          pass: env.NATS_PASS,
          inboxPrefix: env.NATS_INBOX_PREFIX,
        });
        await nc.flush();
        await nc.close();
        await expect(
          connect({ servers: secure.url, user: env.NATS_USER, pass: 'wrong' }),
          `${service} with a wrong password`,
        ).rejects.toThrow(/authori[sz]ation/i);
      }
      await expect(connect({ servers: secure.url }), 'anonymous').rejects.toThrow(/authori[sz]ation/i);
    } finally {
      await secure.stop();
    }
  });

  it("keeps nats-server's monitoring (it lists inbox subjects) on the container's loopback, unpublished", async () => {
    const args: string[] = compose.services.nats.command;
    for (const flag of ['-m', '--http_port', '-ms', '--https_port']) expect(args, flag).not.toContain(flag);
    const conf = file(composeNatsConfigFile());
    expect(conf).not.toMatch(/^\s*(http_port|https|https_port|monitor_port)\s*[:=]/m);
    const listen = /^\s*http\s*[:=]\s*"?([^"\s]+)"?\s*$/m.exec(conf)?.[1];
    expect(listen, 'http: host:port in the nats configuration').toMatch(/^127\.0\.0\.1:\d+$/);
    const monitorPort = listen!.split(':')[1]!;
    const containerPorts = (compose.services.nats.ports as string[]).map((p) => p.split(':').at(-1));
    expect(containerPorts).not.toContain(monitorPort);
    expect(healthcheckOf('nats').join(' ')).toContain(`http://127.0.0.1:${monitorPort}/healthz`);
    // The server itself, as compose starts it (clients on every address), binds monitoring to loopback.
    const secure = await startComposeNats();
    try {
      expect(secure.log()).toMatch(/Starting http monitor on 127\.0\.0\.1:\d+/);
      expect(secure.log()).toMatch(/Listening for client connections on 0\.0\.0\.0:\d+/);
    } finally {
      await secure.stop();
    }
  });

  it('probes the sandbox provider on its own port', async () => {
    const argv = healthcheckOf('sandbox');
    expect(
      await probe(
        argv.map((a) => (a === compose.services.sandbox.environment.SANDBOX_PORT ? new URL(sandbox.url).port : a)),
        {},
      ),
    ).toBe(0);
  });
});

/**
 * nats-server as compose runs it: the committed configuration, the nats service's
 * environment (its TK_NATS_PASS_* defaults), on free ports (`-m` moves monitoring off 8222,
 * which other tests' servers may hold; its address stays the configuration's).
 */
async function startComposeNats(): Promise<{ url: string; log(): string; stop(): Promise<void> }> {
  const [port, monitorPort] = [await freePort(), await freePort()];
  const binary = existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
  const child: ChildProcess = spawn(
    binary,
    ['-c', join(REPO_ROOT, composeNatsConfigFile()), '-p', String(port), '-m', String(monitorPort)],
    {
      env: { PATH: process.env.PATH ?? '', ...envOf('nats') },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const url = `nats://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`nats-server exited: ${stderr}`);
      return connect({ servers: url, user: 'x', pass: 'x', timeout: 500 }).then(
        (nc) => nc.close().then(() => true),
        (error: Error) => /authori[sz]ation/i.test(error.message),
      );
    },
    { timeoutMs: 10_000, message: 'nats-server with the compose configuration accepts connections' },
  );
  return {
    url,
    log: () => stderr,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
