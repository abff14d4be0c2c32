import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authzUsers } from '@tokenkeeper/contracts';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildAuthz,
  parseConsumerFlag,
  parseConsumerScopeFlag,
  parseLeafFlag,
  parsePasswordsFile,
} from './authz.command.js';
import { renderNscCommands, renderServerConfig, shellQuote, type GeneratedUser } from './authz.render.js';
import { UsageError } from './cli.errors.js';

const SERVER = existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
const dir = mkdtempSync(join(tmpdir(), 'tk-authz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** nats-server's own parser: `-t` loads the file, checks it and exits. */
function natsServerAccepts(config: string): { ok: boolean; output: string } {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(file, `listen: "127.0.0.1:-1"\n${config}`);
  const run = spawnSync(SERVER, ['-t', '-c', file], { encoding: 'utf8' });
  return { ok: run.status === 0, output: `${run.stdout}${run.stderr}` };
}

/** The `users = [ … ]` body, without comments: JSON by construction. */
function usersJson(config: string): unknown[] {
  const body = config.slice(config.indexOf('users = [') + 'users = '.length, config.lastIndexOf(']') + 1);
  return JSON.parse(
    body
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'))
      .join('\n'),
  ) as unknown[];
}

const ALL = {
  refresher: true,
  audit: true,
  operator: true,
  tenant: ['acme'],
  tenantAdmin: ['globex'],
  consumer: ['globex:billing:github,slack'],
};

describe('authz rendering', () => {
  it('writes a users array that is JSON and a config nats-server accepts', () => {
    const { config, users } = buildAuthz(ALL);
    const parsed = usersJson(config) as Array<{
      user: string;
      password: string;
      permissions: { publish: { allow: string[] }; subscribe: { allow: string[] }; allow_responses?: boolean };
    }>;
    expect(parsed.map((u) => u.user)).toEqual(users.map((u) => u.user.name));
    expect(parsed.map((u) => u.user)).toEqual([
      'refresher',
      'audit',
      'operator',
      'admin-acme',
      'svc-acme',
      'admin-globex',
      'svc-globex-billing',
    ]);
    const billing = parsed.find((u) => u.user === 'svc-globex-billing')!;
    expect(billing.permissions.publish.allow).toEqual(['token.get.globex.github', 'token.get.globex.slack']);
    expect(billing.permissions.subscribe.allow).toContain('_INBOX_svc-globex-billing.>');
    expect(billing.permissions.allow_responses).toBeUndefined();
    expect(parsed.find((u) => u.user === 'refresher')!.permissions.allow_responses).toBe(true);
    expect(parsed.every((u) => /^[A-Za-z0-9_-]{32}$/.test(u.password))).toBe(true);
    const checked = natsServerAccepts(config);
    expect(checked.output).toMatch(/valid/);
    expect(checked.ok).toBe(true);
  });

  it('is refused by nats-server when it is broken, so the check above means something', () => {
    const { config } = buildAuthz({ refresher: true });
    expect(natsServerAccepts(config.replace('"allow": [', '"allow": [[')).ok).toBe(false);
  });

  it('with --nkeys writes public keys only, and the seeds in a separate commented section marked secret', () => {
    const { config, secrets, users } = buildAuthz({ ...ALL, nkeys: true });
    const parsed = usersJson(config) as Array<{ nkey: string; user?: string; password?: string }>;
    expect(
      parsed.every((u) => /^U[A-Z2-7]{55}$/.test(u.nkey) && u.user === undefined && u.password === undefined),
    ).toBe(true);
    // (A pattern like /SU[A-Z2-7]+/ would also match inside a public key by chance.)
    for (const { credential } of users)
      if (credential.kind === 'nkey') expect(config).not.toContain(credential.seed.slice(0, 20));
    expect(secrets).toMatch(/^# ---- SECRET/);
    for (const { credential, user } of users) {
      expect(credential.kind).toBe('nkey');
      if (credential.kind === 'nkey') expect(secrets).toContain(`NATS_NKEY_SEED=${credential.seed}`);
      expect(secrets).toContain(`NATS_INBOX_PREFIX=${user.inboxPrefix}`);
    }
    expect(
      secrets
        .trim()
        .split('\n')
        .every((l) => l.startsWith('#')),
    ).toBe(true);
    // Config plus secret section in one file still loads: the secrets are comments.
    expect(natsServerAccepts(`${config}\n${secrets}`).ok).toBe(true);
  });

  it('takes passwords from a file, refuses quotes in them and names no password in its errors', () => {
    const file = join(dir, 'passwords');
    writeFileSync(file, '# ops vault export\nrefresher = s3cret-A\n\n');
    const { config } = buildAuthz({ refresher: true, passwordsFile: file });
    expect((usersJson(config) as Array<{ password: string }>)[0]!.password).toBe('s3cret-A');
    writeFileSync(file, 'refresher=bad"pw\n');
    expect(() => buildAuthz({ refresher: true, passwordsFile: file })).toThrow(/quote/);
    expect(() => parsePasswordsFile('refresher s3cret-B')).toThrow(/line 1 is not name=password/);
    try {
      parsePasswordsFile('ok=1\nrefresher s3cret-B');
    } catch (e) {
      expect((e as Error).message).not.toContain('s3cret');
    }
    writeFileSync(file, 'nobody=x\n');
    expect(() => buildAuthz({ refresher: true, passwordsFile: file })).toThrow(/names nobody/);
  });

  it('refuses no roles, bad names and two roles sharing a user', () => {
    expect(() => buildAuthz({})).toThrow(UsageError);
    expect(() => buildAuthz({ tenant: ['a.b'] })).toThrow(UsageError);
    expect(() => parseConsumerFlag('acme')).toThrow(UsageError);
    expect(() => parseConsumerFlag('acme:bill.ing')).toThrow(UsageError);
    expect(() => parseConsumerFlag('acme:billing:')).toThrow(UsageError);
    expect(parseConsumerFlag('acme:billing:github')).toEqual({
      kind: 'consumer',
      tenant: 'acme',
      service: 'billing',
      connections: ['github'],
    });
    expect(() => buildAuthz({ tenant: ['acme'], tenantAdmin: ['acme'] })).toThrow(/share the user name admin-acme/);
  });

  it('renders nsc commands with every subject list shell-quoted', () => {
    const users = authzUsers([{ kind: 'audit' }, { kind: 'consumer', tenant: 'acme' }]);
    const text = renderNscCommands(users, 'TOKENKEEPER');
    expect(text).toContain(`--name 'audit'`);
    expect(text).toContain(`--allow-pub '$JS.API.INFO,$JS.API.CONSUMER.INFO.TOKEN_AUDIT.tokenkeeper-audit,`);
    expect(text).toContain(
      `--allow-sub 'token.refreshed.acme.>,token.registered.acme.>,token.failed.acme.>,token.revoked.acme.>,token.recovered.acme.>,token.expiring.acme.>,_INBOX_svc-acme.>'`,
    );
    expect(text.match(/--allow-pub-response/g)).toHaveLength(1);
    // What a shell would do with the quoted list: nothing.
    const echoed = spawnSync('/bin/sh', ['-c', `printf %s ${shellQuote("a.$B.>,it's")}`], { encoding: 'utf8' });
    expect(echoed.stdout).toBe("a.$B.>,it's");
  });

  it('generates a consumer of many tenants from --consumer-scope, for nats-server and nsc', () => {
    const flags = { refresher: true, consumerScope: ['scheduler:*.twitter,acme.*'] };
    const { config } = buildAuthz(flags);
    const parsed = usersJson(config) as Array<{ user: string; permissions: { publish: { allow: string[] } } }>;
    const scheduler = parsed.find((u) => u.user === 'scope-scheduler')!;
    expect(scheduler.permissions.publish.allow).toEqual(['token.get.*.twitter', 'token.get.acme.*']);
    expect(config).toContain('# scope-scheduler: consumer service scheduler of many tenants (scope *.twitter, acme.*)');
    expect(natsServerAccepts(config).ok).toBe(true);
    const nsc = buildAuthz({ ...flags, nsc: true }).config;
    expect(nsc).toContain(`--name 'scope-scheduler'`);
    expect(nsc).toContain(`--allow-pub 'token.get.*.twitter,token.get.acme.*'`);
    expect(nsc).toContain(`--allow-sub 'token.refreshed.*.twitter,`);
  });

  it('refuses a --consumer-scope that is not <service>:<tenant>.<connection>,… with a usage error', () => {
    for (const bad of [
      'scheduler',
      'scheduler:',
      ':*.twitter',
      'scheduler:twitter',
      'scheduler:*.>',
      'scheduler:a.b.c',
      'scheduler:*.twitter,',
      'sch.eduler:*.*',
    ])
      expect(() => parseConsumerScopeFlag(bad), bad).toThrow(UsageError);
    expect(() => parseConsumerScopeFlag('scheduler:>')).toThrow(/<service>:<tenant>\.<connection>/);
    expect(parseConsumerScopeFlag('scheduler:*.twitter,acme.*')).toEqual({
      kind: 'scoped-consumer',
      service: 'scheduler',
      scope: ['*.twitter', 'acme.*'],
    });
  });

  it('generates a leaf user for the consumers inside --leaf, a password user also with --nkeys, and the no-credentials guard', () => {
    const flags = { refresher: true, tenant: ['acme'], consumer: ['globex:billing'], leaf: ['eu:acme.*'], nkeys: true };
    const { config, secrets, users } = buildAuthz(flags);
    const parsed = usersJson(config) as Array<Record<string, any>>;
    const leaf = parsed.find((u) => u.user === 'leaf-eu')!;
    expect(leaf.password).toEqual(expect.any(String));
    expect(leaf.permissions.publish.allow).toEqual(['token.get.acme.*']);
    expect(leaf.permissions.subscribe.allow).toContain('_INBOX_svc-acme.>');
    expect(leaf.permissions.subscribe.allow).not.toContain('_INBOX_svc-globex-billing.>');
    expect(config).toContain("the leaf's leafnodes remote connects as this user");
    expect(secrets).toContain(`nats-leaf://leaf-eu:${leaf.password}@<hub>:7422`);
    expect(users.find((u) => u.user.name === 'svc-acme')!.credential.kind).toBe('nkey');
    // The guard: the last user, refused by connection type, and no_auth_user naming it; its password is nobody's.
    const guard = parsed.at(-1)!;
    expect(guard).toMatchObject({ user: 'no-credentials', allowed_connection_types: ['MQTT'] });
    expect(config).toContain('\nno_auth_user: "no-credentials"\n');
    expect(secrets).not.toContain(guard.password);
    expect(natsServerAccepts(config).ok).toBe(true);
    expect(natsServerAccepts(`${config}leafnodes { listen: "127.0.0.1:-1" }\n`).ok).toBe(true);
    // Without a leaf there is no guard.
    expect(buildAuthz({ refresher: true, tenant: ['acme'] }).config).not.toContain('no_auth_user');
  });

  it('refuses a --leaf that is not <leaf>:<tenant>.<connection>,… or serves none of the consumers asked for', () => {
    const consumers = [{ kind: 'consumer', tenant: 'acme' } as const];
    for (const bad of ['eu', 'eu:', ':acme.*', 'eu:acme', 'e.u:acme.*', 'eu:acme.>'])
      expect(() => parseLeafFlag(bad, consumers), bad).toThrow(/<leaf>:<tenant>\.<connection>/);
    expect(() => parseLeafFlag('eu:globex.*', consumers)).toThrow(UsageError);
    expect(() => buildAuthz({ refresher: true, leaf: ['eu:acme.*'] })).toThrow(/no consumer asked for/);
  });

  it('keeps comments out of the JSON and names each user’s role and inbox', () => {
    const generated: GeneratedUser[] = authzUsers([{ kind: 'operator' }]).map((user) => ({
      user,
      credential: { kind: 'password', password: 'p' },
    }));
    const text = renderServerConfig(generated, 'line one\nline two');
    expect(text.startsWith('# line one\n# line two\nauthorization {')).toBe(true);
    expect(text).toContain('# operator: operator; connects with NATS_INBOX_PREFIX=_INBOX_operator');
  });
});
