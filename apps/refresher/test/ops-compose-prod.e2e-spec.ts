import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { freePort, waitFor } from '@tokenkeeper/testing';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { AUDIT_ENV_VARIABLES } from '../../audit/src/config/audit-config.js';
import { ENV_VARIABLES } from '../src/config/app-config.js';
import { REPO_ROOT } from './ops-support.js';

/**
 * docker-compose.prod.yml, checked without a Docker engine: every secret comes from a
 * mounted secret file (`<NAME>_FILE`), none is written in the file or taken from the shell's
 * environment, PostgreSQL asks for a password, NATS runs the generated users with their
 * passwords from a file (started here for real), the providers file is mounted, and only the
 * NATS client port is published.
 */
const file = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
const compose = parse(file('docker-compose.prod.yml'), { merge: true });
const run = promisify(execFile);

const SECRETS: Record<string, string[]> = {
  refresher: ['DATABASE_URL', 'TOKEN_ENCRYPTION_KEYS', 'EVENT_SIGNING_KEY', 'NATS_PASS'],
  audit: ['AUDIT_DATABASE_URL', 'NATS_PASS', 'HEALTHCHECK_NATS_PASS'],
};
const SECRET_NAME = /(PASS|PASSWORD|SECRET|KEY|KEYS|TOKEN|DATABASE_URL)$/;
const HEALTHCHECK_VARIABLES = new Set([
  'HEALTHCHECK_NATS_USER',
  'HEALTHCHECK_NATS_PASS',
  'HEALTHCHECK_NATS_INBOX_PREFIX',
]);

const envOf = (service: string): Record<string, string> => compose.services[service].environment ?? {};

describe('ops: the production compose file', () => {
  it('reads every secret of the apps from a mounted secret file, through <NAME>_FILE', () => {
    for (const [service, names] of Object.entries(SECRETS)) {
      const env = envOf(service);
      const mounted: string[] = compose.services[service].secrets ?? [];
      for (const name of names) {
        expect(env[name], `${service}: ${name} not set in the file`).toBeUndefined();
        const path = env[`${name}_FILE`];
        expect(path, `${service}: ${name}_FILE`).toMatch(/^\/run\/secrets\/[a-z_]+$/);
        const secret = path!.slice('/run/secrets/'.length);
        expect(mounted, `${service}: secret ${secret} mounted`).toContain(secret);
        expect(compose.secrets[secret]?.file, `secret ${secret}`).toMatch(/^\.\/secrets\/[a-z_.]+$/);
      }
    }
  });

  it('sets only variables the apps read (or a _FILE form of one)', () => {
    const known: Record<string, Set<string>> = {
      refresher: new Set(ENV_VARIABLES),
      audit: new Set([...AUDIT_ENV_VARIABLES, ...HEALTHCHECK_VARIABLES]),
    };
    for (const service of ['refresher', 'audit']) {
      for (const name of Object.keys(envOf(service))) {
        const base = name.replace(/_FILE$/, '');
        expect(known[service]!.has(name) || known[service]!.has(base), `${service}: ${name}`).toBe(true);
      }
    }
  });

  it('holds no plaintext secret, no development default and takes nothing from the shell environment', () => {
    for (const [service, definition] of Object.entries(compose.services as Record<string, { environment?: object }>)) {
      for (const [name, value] of Object.entries(definition.environment ?? {})) {
        expect(SECRET_NAME.test(name), `${service}: ${name} is a secret in plain text`).toBe(false);
        expect(String(value), `${service}: ${name}`).not.toMatch(/dev-only|\$\{|:\/\/[^/@]+:[^/@]+@/);
      }
    }
    expect(JSON.stringify(compose)).not.toMatch(/dev-only|trust|\$\{(?!TOKENKEEPER_IMAGE)/);
  });

  it('makes PostgreSQL ask for a password (scram-sha-256) read from a secret file', () => {
    const env = envOf('postgres');
    expect(env.POSTGRES_HOST_AUTH_METHOD).toBe('scram-sha-256');
    expect(env.POSTGRES_INITDB_ARGS).toContain('--auth-host=scram-sha-256');
    expect(env.POSTGRES_PASSWORD).toBeUndefined();
    expect(env.POSTGRES_PASSWORD_FILE).toBe('/run/secrets/postgres_password');
    expect(compose.services.postgres.secrets).toContain('postgres_password');
  });

  it('mounts the providers file read-only where PROVIDERS_FILE points, and its variables from a file', () => {
    const target = envOf('refresher').PROVIDERS_FILE;
    const mount = (compose.services.refresher.volumes as string[])
      .map((v) => v.split(':'))
      .find((v) => v[1] === target);
    expect(mount, `a volume mounted at ${target}`).toBeDefined();
    expect(mount![2]).toBe('ro');
    expect(existsSync(join(REPO_ROOT, mount![0]!))).toBe(true);
    expect(compose.services.refresher.env_file).toEqual(['./secrets/providers.env']);
    for (const entry of ['/secrets/']) expect(file('.gitignore').split('\n')).toContain(entry);
    expect(file('.dockerignore').split('\n')).toContain('secrets');
  });

  it('publishes only the NATS client port; /metrics and NATS monitoring stay private', () => {
    for (const [service, definition] of Object.entries(compose.services as Record<string, { ports?: string[] }>)) {
      if (service === 'nats') expect(definition.ports).toEqual(['4222:4222']);
      else expect(definition.ports, `${service} publishes nothing`).toBeUndefined();
    }
    expect(compose.services.refresher.expose).toEqual(['8080']);
    // The audit app's monitoring port: on the container's addresses for Prometheus, exposed, not published.
    expect(compose.services.audit.expose).toEqual([envOf('audit').AUDIT_MONITORING_PORT]);
    expect(envOf('audit').AUDIT_MONITORING_HOST).toBe('0.0.0.0');
    const args = (compose.services.nats.command as string[])[0]!.split(/\s+/);
    for (const flag of ['-m', '--http_port', '-ms', '--https_port']) expect(args).not.toContain(flag);
    expect(args).toContain('/etc/nats/nats.conf');
    expect(file('deploy/nats/nats.conf')).toMatch(/^http: 127\.0\.0\.1:8222$/m);
  });

  it('runs nats-server as the production file does: generated users, passwords from the secret file only', async () => {
    expect(compose.services.nats.entrypoint).toEqual(['/bin/sh', '-c']);
    const [script] = compose.services.nats.command as string[];
    expect(script).toContain('. /run/secrets/nats_passwords');
    expect(compose.services.nats.secrets).toEqual(['nats_passwords']);
    expect(compose.services.nats.environment).toBeUndefined();
    expect(compose.services.nats.volumes).toContain('./deploy/nats:/etc/nats:ro');
    const auth = file('deploy/nats/tokenkeeper-auth.conf');
    const variables = [...new Set([...auth.matchAll(/\$(TK_NATS_PASS_[A-Z0-9_]+)/g)].map((m) => m[1]!))];
    expect(variables).toContain('TK_NATS_PASS_REFRESHER');
    // The secret where the container sees it, the mounted deploy/nats as /etc/nats, JetStream in a temp dir.
    const dir = mkdtempSync(join(tmpdir(), 'tk-nats-prod-'));
    const passwords = Object.fromEntries(
      variables.map((v, i) => [v, `pw-${i}-${Math.random().toString(36).slice(2)}`]),
    );
    writeFileSync(join(dir, 'nats_passwords'), variables.map((v) => `${v}='${passwords[v]}'`).join('\n') + '\n');
    const [port, monitor] = [await freePort(), await freePort()];
    const binary = existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
    const local = script!
      .replace('/run/secrets/nats_passwords', join(dir, 'nats_passwords'))
      .replace('exec nats-server', `exec ${binary}`)
      .replace('/etc/nats/', `${join(REPO_ROOT, 'deploy/nats')}/`)
      .replace('/data/jetstream', join(dir, 'js'));
    // An empty environment: nothing but the file may supply a password.
    const child = spawn('/bin/sh', ['-c', `${local} -p ${port} -m ${monitor}`], {
      env: { PATH: process.env.PATH ?? '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (log += c));
    const url = `nats://127.0.0.1:${port}`;
    try {
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`nats-server exited: ${log}`);
          return connect({ servers: url, user: 'x', pass: 'x', timeout: 500 }).then(
            (nc) => nc.close().then(() => true),
            (error: Error) => /authori[sz]ation/i.test(error.message),
          );
        },
        { timeoutMs: 10_000, message: 'nats-server with the production configuration' },
      );
      for (const service of ['refresher', 'audit']) {
        const env = envOf(service);
        const pass = passwords[`TK_NATS_PASS_${env.NATS_USER!.toUpperCase()}`]!;
        const nc = await connect({ servers: url, user: env.NATS_USER, pass, inboxPrefix: env.NATS_INBOX_PREFIX });
        await nc.flush();
        await nc.close();
        await expect(connect({ servers: url, user: env.NATS_USER, pass: 'wrong' })).rejects.toThrow(
          /authori[sz]ation/i,
        );
      }
      await expect(connect({ servers: url })).rejects.toThrow(/authori[sz]ation/i);

      // The audit healthcheck, its password from a file as the secret mount gives it.
      const audit = envOf('audit');
      const responder = await connect({
        servers: url,
        user: audit.NATS_USER,
        pass: passwords.TK_NATS_PASS_AUDIT,
        inboxPrefix: audit.NATS_INBOX_PREFIX,
      });
      responder.subscribe('audit.query.*', { callback: (_e, msg) => void msg.respond('{"ok":true,"items":[]}') });
      await responder.flush();
      const probe = (passFile: string) =>
        run(process.execPath, ['deploy/healthcheck.mjs', 'nats', 'audit.query.healthcheck'], {
          cwd: REPO_ROOT,
          env: { PATH: process.env.PATH ?? '', ...audit, NATS_URL: url, HEALTHCHECK_NATS_PASS_FILE: passFile },
        }).then(
          () => 0,
          (error: { code?: number }) => error.code ?? -1,
        );
      writeFileSync(join(dir, 'healthcheck'), `${passwords.TK_NATS_PASS_ADMIN__HEALTHCHECK}\n`);
      writeFileSync(join(dir, 'wrong'), 'wrong\n');
      expect(await probe(join(dir, 'healthcheck')), 'healthcheck password from its file').toBe(0);
      expect(await probe(join(dir, 'wrong')), 'a wrong password in the file').toBe(1);
      await responder.close();
    } finally {
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const cli = (() => {
    try {
      execFileSync('docker', ['compose', 'version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(!cli)('is a valid compose file for the compose CLI (`config`, no engine needed)', async () => {
    const { stdout } = await run('docker', ['compose', '-f', 'docker-compose.prod.yml', 'config', '--services'], {
      cwd: REPO_ROOT,
    });
    expect(stdout.split('\n').filter(Boolean).sort()).toEqual(['audit', 'nats', 'postgres', 'refresher']);
  });
});
