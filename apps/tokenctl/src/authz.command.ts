import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createUser } from '@nats-io/nkeys';
import { Command } from 'commander';
import {
  authzUsers,
  isValidName,
  leafRole,
  parseScopeEntry,
  SCOPE_ENTRY_RULE,
  type AuthzRole,
  type AuthzUser,
} from '@tokenkeeper/contracts';
import {
  renderNscCommands,
  renderSecrets,
  renderServerConfig,
  type GeneratedUser,
  type UserCredential,
} from './authz.render.js';
import { ExitCode, reportError, UsageError } from './cli.errors.js';

/**
 * `tokenctl authz`: the nats-server `authorization` block (or the `nsc` commands) for the
 * roles of the authorization model, so nobody writes permissions by hand. Offline: it talks to no server.
 */

export interface AuthzFlags {
  refresher?: boolean;
  audit?: boolean;
  auditConsumer?: string;
  operator?: boolean;
  tenant?: string[];
  tenantAdmin?: string[];
  consumer?: string[];
  consumerScope?: string[];
  leaf?: string[];
  nkeys?: boolean;
  passwordsFile?: string;
  secretsFile?: string;
  out?: string;
  nsc?: string | boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function tenantName(value: string, flag: string): string {
  if (!isValidName(value)) throw new UsageError(`${flag}: tenant must match ^[A-Za-z0-9_-]{1,128}$`);
  return value;
}

/** `acme:billing` or `acme:billing:github,slack` → a consumer role. */
export function parseConsumerFlag(value: string): AuthzRole {
  const [tenant, service, connections, ...rest] = value.split(':');
  const names = connections === undefined ? undefined : connections.split(',').filter(Boolean);
  if (
    rest.length > 0 ||
    !service ||
    !isValidName(tenant ?? '') ||
    !isValidName(service) ||
    (names !== undefined && (names.length === 0 || !names.every(isValidName)))
  ) {
    throw new UsageError(
      `--consumer ${JSON.stringify(value)}: give <tenant>:<service>[:<connection>,…] with names of ^[A-Za-z0-9_-]{1,128}$`,
    );
  }
  return { kind: 'consumer', tenant, service, ...(names ? { connections: names } : {}) };
}

/** `scheduler:*.twitter,acme.*` → a consumer of many tenants. */
export function parseConsumerScopeFlag(value: string): AuthzRole {
  const colon = value.indexOf(':');
  const service = colon < 0 ? '' : value.slice(0, colon);
  const entries = colon < 0 ? [] : value.slice(colon + 1).split(',');
  if (!isValidName(service) || entries.length === 0 || !entries.every((e) => parseScopeEntry(e) !== null)) {
    throw new UsageError(
      `--consumer-scope ${JSON.stringify(value)}: give <service>:<tenant>.<connection>[,<tenant>.<connection>…], the service a name of ^[A-Za-z0-9_-]{1,128}$ and each entry ${SCOPE_ENTRY_RULE} (e.g. scheduler:*.twitter)`,
    );
  }
  return { kind: 'scoped-consumer', service, scope: entries };
}

/** `eu:acme.*,globex.github` → a leaf node's connection user, serving the consumers of `roles` inside that scope. */
export function parseLeafFlag(value: string, roles: readonly AuthzRole[]): AuthzRole {
  const colon = value.indexOf(':');
  const leaf = colon < 0 ? '' : value.slice(0, colon);
  const entries = colon < 0 ? [] : value.slice(colon + 1).split(',');
  if (!isValidName(leaf) || entries.length === 0 || !entries.every((e) => parseScopeEntry(e) !== null)) {
    throw new UsageError(
      `--leaf ${JSON.stringify(value)}: give <leaf>:<tenant>.<connection>[,…], the leaf a name of ^[A-Za-z0-9_-]{1,128}$ and each entry ${SCOPE_ENTRY_RULE} (e.g. eu:acme.github)`,
    );
  }
  try {
    return leafRole(leaf, entries, roles);
  } catch (error) {
    throw new UsageError(
      `--leaf ${JSON.stringify(value)}: ${(error as Error).message}`,
      'name the consumers the leaf serves in the same command (--tenant, --consumer, --consumer-scope): their inboxes are where replies go',
    );
  }
}

/** The roles asked for, in a stable order: services first, then people, then tenants' services. */
export function rolesFromFlags(flags: AuthzFlags): AuthzRole[] {
  const roles: AuthzRole[] = [];
  if (flags.refresher) roles.push({ kind: 'refresher' });
  if (flags.audit) roles.push({ kind: 'audit', ...(flags.auditConsumer ? { consumerName: flags.auditConsumer } : {}) });
  if (flags.operator) roles.push({ kind: 'operator' });
  for (const t of flags.tenant ?? []) {
    const tenant = tenantName(t, '--tenant');
    roles.push({ kind: 'tenant-admin', tenant }, { kind: 'consumer', tenant });
  }
  for (const t of flags.tenantAdmin ?? [])
    roles.push({ kind: 'tenant-admin', tenant: tenantName(t, '--tenant-admin') });
  for (const c of flags.consumer ?? []) roles.push(parseConsumerFlag(c));
  for (const c of flags.consumerScope ?? []) roles.push(parseConsumerScopeFlag(c));
  // Last: a leaf serves consumers asked for above.
  const consumers = [...roles];
  for (const l of flags.leaf ?? []) roles.push(parseLeafFlag(l, consumers));
  if (roles.length === 0) {
    throw new UsageError(
      'no roles asked for',
      'add --refresher, --audit, --operator, --tenant <t>, --tenant-admin <t>, --consumer <t>:<service> or --consumer-scope <service>:<t>.<c>',
    );
  }
  return roles;
}

/** `name=password` lines (blank lines and `#` comments skipped). */
export function parsePasswordsFile(text: string): Map<string, string> {
  const passwords = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    // The line number, never the line: it holds a password.
    if (eq <= 0 || eq === line.length - 1) throw new UsageError(`--passwords-file: line ${i + 1} is not name=password`);
    passwords.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  });
  return passwords;
}

/** 24 random bytes, base64url: nothing nats-server's config or a shell would read specially. */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

function credentialFor(user: AuthzUser, flags: AuthzFlags, passwords: Map<string, string>): UserCredential {
  // A leafnodes remote of nats-server 2.9 signs in with a URL's user:password or a JWT creds file, not an nkey seed.
  if (flags.nkeys && user.role.kind !== 'leaf') {
    const kp = createUser();
    return { kind: 'nkey', publicKey: kp.getPublicKey(), seed: new TextDecoder().decode(kp.getSeed()) };
  }
  const given = passwords.get(user.name);
  if (given !== undefined && /["\\\s]/.test(given))
    throw new UsageError(`--passwords-file: the password of ${user.name} holds a quote, backslash or space`);
  return { kind: 'password', password: given ?? generatePassword() };
}

export interface AuthzOutput {
  /** What goes to stdout or --out. */
  config: string;
  /** Credentials; empty for --nsc (nsc makes its own keys). */
  secrets: string;
  /** The users with their credentials, for callers that connect as them (tests, the demo). */
  users: GeneratedUser[];
}

export function buildAuthz(flags: AuthzFlags): AuthzOutput {
  const users = authzUsers(rolesFromFlags(flags));
  if (flags.nsc !== undefined && flags.nsc !== false) {
    const account = typeof flags.nsc === 'string' ? flags.nsc : 'TOKENKEEPER';
    if (!isValidName(account)) throw new UsageError('--nsc: account name must match ^[A-Za-z0-9_-]{1,128}$');
    return { config: renderNscCommands(users, account), secrets: '', users: [] };
  }
  if (flags.nkeys && flags.passwordsFile) throw new UsageError('--nkeys and --passwords-file: choose one');
  const passwords = flags.passwordsFile
    ? parsePasswordsFile(readFileSync(flags.passwordsFile, 'utf8'))
    : new Map<string, string>();
  for (const name of passwords.keys()) {
    if (!users.some((u) => u.name === name))
      throw new UsageError(`--passwords-file names ${name}, which is none of the users asked for`);
  }
  const generated: GeneratedUser[] = users.map((user) => ({ user, credential: credentialFor(user, flags, passwords) }));
  const header = `generated by tokenctl authz; users: ${users.map((u) => u.name).join(', ')}`;
  // A hub with a leafnodes port needs the guard (authz.render.ts says why); without one it changes nothing.
  const guard = users.some((u) => u.role.kind === 'leaf') ? { noCredentialsPassword: generatePassword() } : {};
  return {
    config: renderServerConfig(generated, header, guard),
    secrets: renderSecrets(generated),
    users: generated,
  };
}

/** Mode 600 also when the file was already there (writeFileSync's mode applies only on creation). */
function writePrivate(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export async function authzCommand(
  flags: AuthzFlags,
  io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
): Promise<ExitCode> {
  const { config, secrets } = buildAuthz(flags);
  if (flags.out) writePrivate(flags.out, config);
  else io.stdout.write(config);
  if (secrets) {
    if (flags.secretsFile) {
      writePrivate(flags.secretsFile, secrets);
      io.stderr.write(`credentials written to ${flags.secretsFile} (mode 600): give each service only its own\n`);
    } else {
      // A separate section after the block, every line a comment, marked secret.
      io.stdout.write(`\n${secrets}`);
    }
  }
  return ExitCode.ok;
}

/** Registers `authz` on the program (offline: no NATS session). */
export function registerAuthzCommand(program: Command): void {
  program
    .command('authz')
    .description('print the nats-server authorization block (or nsc commands) for the roles of the authorization model')
    .option('--refresher', 'the refresher service user')
    .option('--audit', 'the audit app user')
    .option(
      '--audit-consumer <name>',
      'the audit app durable consumer (AUDIT_CONSUMER_NAME, default tokenkeeper-audit)',
    )
    .option('--operator', 'the operator (tokenctl) user')
    .option('--tenant <tenant>', 'a tenant admin and a consumer service of this tenant (repeatable)', collect)
    .option('--tenant-admin <tenant>', 'a tenant admin of this tenant (repeatable)', collect)
    .option(
      '--consumer <tenant:service[:conn,…]>',
      'a consumer service of a tenant, optionally limited to connections (repeatable)',
      collect,
    )
    .option(
      '--consumer-scope <service:tenant.conn,…>',
      'a consumer service of many tenants; each side of an entry a name or * (e.g. scheduler:*.twitter; repeatable)',
      collect,
    )
    .option(
      '--leaf <leaf:tenant.conn,…>',
      'the user a leaf node connects to this hub as, for the consumers of this command inside the scope (e.g. eu:acme.github; a * needs nats-server 2.9.16+ on the hub; a password user also with --nkeys; repeatable)',
      collect,
    )
    .option('--nkeys', 'nkey users (public keys in the config, seeds in the secret section) instead of passwords')
    .option('--passwords-file <path>', 'name=password lines to use instead of generated passwords')
    .option('--secrets-file <path>', 'write the credentials there (mode 600) instead of a secret section on stdout')
    .option('--out <path>', 'write the config there (mode 600) instead of stdout')
    .option('--nsc [account]', 'print nsc add user commands for this account (default TOKENKEEPER) instead')
    .addHelpText(
      'after',
      `
Examples:
  tokenctl authz --refresher --audit --operator --tenant acme --consumer globex:billing:github > auth.conf
  tokenctl authz --refresher --audit --operator --tenant acme --nkeys --secrets-file tokenkeeper.secrets
  tokenctl authz --refresher --tenant acme --nsc TOKENKEEPER
  tokenctl authz --refresher --consumer-scope 'scheduler:*.twitter' --consumer-scope 'reports:acme.*,globex.*'
  tokenctl authz --refresher --audit --operator --tenant acme --consumer acme:billing:github --leaf eu:acme.github`,
    )
    .action(async (flags: AuthzFlags) => {
      try {
        process.exitCode = await authzCommand(flags, { stdout: process.stdout, stderr: process.stderr });
      } catch (error) {
        process.exitCode = reportError(error, process.stderr);
      }
    });
}
