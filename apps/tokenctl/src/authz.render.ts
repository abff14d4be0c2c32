import type { AuthzRole, AuthzUser } from '@tokenkeeper/contracts';

/**
 * Renders the permission model (libs/contracts permissions.ts) for nats-server and nsc.
 * Pure functions: `tokenctl authz` decides users and credentials, this only writes text.
 *
 * Every string goes out JSON-quoted: nats-server's config reads `$X` in a bare word as a
 * variable and `>`/`*` bare are fragile, while a double-quoted JSON string is taken as
 * is. The users array is therefore valid JSON, which the spec parses as such.
 */

export type UserCredential = { kind: 'password'; password: string } | { kind: 'nkey'; publicKey: string; seed: string };

export interface GeneratedUser {
  user: AuthzUser;
  credential: UserCredential;
}

function describeRole(role: AuthzRole): string {
  switch (role.kind) {
    case 'consumer':
      return `consumer service${role.service ? ` ${role.service}` : ''} of tenant ${role.tenant}${role.connections?.length ? ` (connections ${role.connections.join(', ')})` : ''}`;
    case 'scoped-consumer':
      return `consumer service ${role.service} of many tenants (scope ${role.scope.join(', ')})`;
    case 'tenant-admin':
      return `tenant admin of ${role.tenant}`;
    case 'audit':
      return `audit app (durable consumer ${role.consumerName ?? 'default'})`;
    case 'leaf':
      return `leaf node ${role.leaf} (scope ${role.scope.join(', ')}; replies into ${role.inboxPrefixes.join(', ')})`;
    default:
      return role.kind;
  }
}

/** One user as a nats-server config object (password or nkey; permissions always). */
export function serverUserObject({ user, credential }: GeneratedUser): Record<string, unknown> {
  const { publish, subscribe, allowResponses } = user.permissions;
  const identity =
    credential.kind === 'nkey' ? { nkey: credential.publicKey } : { user: user.name, password: credential.password };
  return {
    ...identity,
    permissions: {
      publish: { allow: [...publish] },
      subscribe: { allow: [...subscribe] },
      ...(allowResponses ? { allow_responses: true } : {}),
    },
  };
}

/** The user a client or leaf node that sends no credentials is taken for (`no_auth_user`); see {@link noCredentialsUser}. */
export const NO_CREDENTIALS_USER = 'no-credentials';

/**
 * nats-server before 2.12 lets a leaf node that sends no credentials into the account with no
 * permissions at all when the leafnodes block has no authorization of its own (auth.go falls
 * back to the global account), however tight the users' permissions are. Pointing
 * `no_auth_user` at a user allowed only a connection type nobody uses here (MQTT) makes such
 * a leaf, and a client without credentials, fail authentication instead; deny-all
 * permissions in case MQTT is ever turned on. Its password is never handed out.
 */
export function noCredentialsUser(password: string): Record<string, unknown> {
  return {
    user: NO_CREDENTIALS_USER,
    password,
    allowed_connection_types: ['MQTT'],
    permissions: { publish: { deny: ['>'] }, subscribe: { deny: ['>'] } },
  };
}

function userComment(user: AuthzUser): string {
  const how =
    user.role.kind === 'leaf'
      ? "the leaf's leafnodes remote connects as this user"
      : `connects with NATS_INBOX_PREFIX=${user.inboxPrefix}`;
  return `# ${user.name}: ${describeRole(user.role)}; ${how}`;
}

export interface RenderOptions {
  /** Adds the {@link noCredentialsUser} guard with this password, and `no_auth_user` after the block. */
  noCredentialsPassword?: string;
}

/** The `authorization { users = [ … ] }` block, each user preceded by a comment naming its role and inbox. */
export function renderServerConfig(
  users: readonly GeneratedUser[],
  header?: string,
  options: RenderOptions = {},
): string {
  const entries = users.map((generated) => ({
    comment: userComment(generated.user),
    body: serverUserObject(generated),
  }));
  if (options.noCredentialsPassword !== undefined) {
    entries.push({
      comment: `# ${NO_CREDENTIALS_USER}: what a leaf node or client without credentials is taken for, and refused (no_auth_user)`,
      body: noCredentialsUser(options.noCredentialsPassword),
    });
  }
  const lines: string[] = [];
  if (header) lines.push(...header.split('\n').map((l) => `# ${l}`));
  lines.push('authorization {', '  users = [');
  entries.forEach(({ comment, body }, i) => {
    lines.push(`    ${comment}`);
    const text = JSON.stringify(body, null, 2).split('\n');
    const last = i === entries.length - 1;
    text.forEach((line, j) => lines.push(`    ${line}${last || j < text.length - 1 ? '' : ','}`));
  });
  lines.push('  ]', '}');
  if (options.noCredentialsPassword !== undefined) lines.push(`no_auth_user: "${NO_CREDENTIALS_USER}"`);
  return `${lines.join('\n')}\n`;
}

/**
 * What each service needs to connect, as environment lines. Every line is a comment
 * to nats-server, so the whole output stays loadable as one file if someone pipes it
 * into a config, and the marker says it must not be shared.
 */
export function renderSecrets(users: readonly GeneratedUser[]): string {
  const lines = ['# ---- SECRET: credentials for each user; give each service only its own, never commit this ----'];
  for (const { user, credential } of users) {
    lines.push(`# [${user.name}] ${describeRole(user.role)}`);
    if (credential.kind === 'nkey') lines.push(`#   NATS_NKEY_SEED=${credential.seed}`);
    else if (user.role.kind === 'leaf')
      lines.push(`#   leafnodes remote url: nats-leaf://${user.name}:${credential.password}@<hub>:7422`);
    else lines.push(`#   NATS_USER=${user.name}`, `#   NATS_PASS=${credential.password}`);
    if (user.role.kind !== 'leaf') lines.push(`#   NATS_INBOX_PREFIX=${user.inboxPrefix}`);
  }
  lines.push('# ---- END SECRET ----');
  return `${lines.join('\n')}\n`;
}

/** A POSIX shell single-quoted word: subjects hold `$`, `*` and `>`. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'"'"'`)}'`;
}

/**
 * The same users as `nsc` commands for operator mode (one account; see docs/security.md
 * for one account per tenant). nsc makes the nkeys and creds files itself.
 */
export function renderNscCommands(users: readonly AuthzUser[], account: string): string {
  const lines = [
    `# nsc commands for account ${account} (operator mode); nsc generates each user's nkey and creds file`,
  ];
  for (const user of users) {
    const { publish, subscribe, allowResponses } = user.permissions;
    lines.push(
      `# ${user.name}: ${describeRole(user.role)}; connect with NATS_CREDS=<creds of ${user.name}> NATS_INBOX_PREFIX=${user.inboxPrefix}`,
    );
    const args = [
      'nsc add user',
      `--account ${shellQuote(account)}`,
      `--name ${shellQuote(user.name)}`,
      `--allow-pub ${shellQuote(publish.join(','))}`,
      `--allow-sub ${shellQuote(subscribe.join(','))}`,
      ...(allowResponses ? ['--allow-pub-response'] : []),
    ];
    lines.push(args.join(' \\\n    '));
  }
  return `${lines.join('\n')}\n`;
}
