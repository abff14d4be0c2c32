/**
 * tokenctl: the operator's command line for Tokenkeeper, over NATS request-reply.
 *
 *   npm run tokenctl -- list --all
 *   npx tokenctl get acme github --show-token --json | jq -r .token.accessToken
 *
 * Exit status: 0 ok, 1 the service answered an error, 2 usage error (nothing sent),
 * 3 NATS unreachable / no responders / no reply in time.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { AUDIT_RECORD_TYPES, CREDENTIAL_STATUSES, TOKEN_EVENT_KINDS } from '@tokenkeeper/contracts';
import { ExitCode, reportError, ServiceError } from './cli.errors.js';
import { registerAuthzCommand } from './authz.command.js';
import { registerKeygenCommand } from './keygen.command.js';
import { registerWebhookCommands } from './webhook.commands.js';
import { registerAuthzJwtCommand } from './authz-jwt.command.js';
import { auditCommand, watchCommand } from './events.commands.js';
import { DEFAULT_NATS_URL, DEFAULT_TIMEOUT_MS } from './cli.defaults.js';
import type { CommandContext, NatsSession } from './nats.session.js';
import { createOutput, printJson } from './output.format.js';
import { registerCommand } from './register.command.js';
import { connectCommand, type ConnectFlags } from './connect.command.js';
import { describeCommand, getCommand, listCommand, refreshCommand, revokeCommand } from './tokens.commands.js';

const integer = (name: string, min: number, max: number) => (value: string) => {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min || Number(value) > max) {
    throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
  }
  return Number(value);
};

/** `15000`, `15000ms`, `15s`, `1m` → milliseconds. */
function duration(value: string): number {
  const match = /^(\d+)(ms|s|m)?$/.exec(value.trim());
  if (!match || Number(match[1]) <= 0)
    throw new InvalidArgumentError('give milliseconds (15000) or a duration (15s, 1m)');
  return Number(match[1]) * (match[2] === 's' ? 1_000 : match[2] === 'm' ? 60_000 : 1);
}

interface GlobalFlags {
  natsUrl?: string;
  timeout?: number;
  json?: boolean;
}

/** Runs a command: builds its context, maps what it throws to a message and an exit status. */
function action<A extends unknown[]>(handler: (ctx: CommandContext, ...args: A) => Promise<ExitCode>) {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const globals = command.optsWithGlobals<GlobalFlags>();
    const out = createOutput(Boolean(globals.json));
    let session: NatsSession | undefined;
    const ctx: CommandContext = {
      out,
      // Loaded on first use: the NATS client and the shared libraries are most of a start's cost.
      session: async (options) => {
        const { NatsSession, natsSettings } = await import('./nats.session.js');
        return (session ??= await NatsSession.open(natsSettings(globals, process.env), options));
      },
    };
    try {
      process.exitCode = await handler(ctx, ...(args.slice(0, -1) as A));
    } catch (error) {
      // Scripts asked for JSON: they get the service's error reply as is, besides the message.
      if (out.json && error instanceof ServiceError && error.reply !== null) printJson(out, error.reply);
      process.exitCode = reportError(error, out.stderr);
    } finally {
      await session?.close();
    }
  };
}

/**
 * The project's version: the nearest package.json named tokenkeeper above this module, which
 * is the repository's from the sources or the launcher's cache, and /app/package.json in the
 * image (its build output sits in /app/dist).
 */
function version(): string {
  for (let dir = new URL('.', import.meta.url); ;) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'tokenkeeper' && pkg.version) return pkg.version;
    } catch {
      // no package.json here: look further up
    }
    const parent = new URL('..', dir);
    if (parent.href === dir.href) return 'unknown';
    dir = parent;
  }
}

export function buildProgram(): Command {
  const program = createProgram();
  addRegisterCommand(program);
  addTokenCommands(program);
  addCredentialActions(program);
  addEventCommands(program);
  addConnectCommand(program);
  registerWebhookCommands(program, action);
  registerAuthzCommand(program);
  registerKeygenCommand(program);
  registerAuthzJwtCommand(program);
  return program;
}

/** The program itself: its global flags and the help text around the commands. */
function createProgram(): Command {
  const program = new Command('tokenctl')
    .description(
      'Operate Tokenkeeper over NATS: register credentials, inspect, refresh, revoke, watch events, query audit.',
    )
    .version(version())
    .exitOverride()
    .showHelpAfterError('(tokenctl <command> --help shows usage)')
    .option(
      '--nats-url <url>',
      `NATS server(s), comma-separated (env NATS_URL, default ${DEFAULT_NATS_URL}); auth from NATS_USER/NATS_PASS, NATS_TOKEN, NATS_CREDS or NATS_NKEY_SEED, and NATS_INBOX_PREFIX (the user's own, _INBOX_<user>)`,
    )
    .option('--timeout <ms>', `request timeout, e.g. 15000 or 15s (default ${DEFAULT_TIMEOUT_MS / 1000}s)`, duration)
    .option('--json', 'print the reply JSON instead of tables (for scripts)');
  program.addHelpText(
    'after',
    `
Exit status: 0 ok, 1 the service answered an error, 2 usage error, 3 NATS unreachable / no responders / timeout.
Colour only on a terminal, never with NO_COLOR set. Token values are masked unless you ask (--show-token, --show-secrets).

Examples:
  tokenctl register --tenant acme --connection github --provider github --refresh-token-file rt.txt
  tokenctl register --file creds.jsonl --provider sandbox      # bulk import, one JSON object a line
  tokenctl get acme github                                      # token masked
  tokenctl list --tenant acme --status failing
  tokenctl watch --tenant acme`,
  );
  return program;
}

/** `register`: one credential from flags, or a bulk import from a file. */
function addRegisterCommand(program: Command): void {
  program
    .command('register')
    .description('register (or replace) a credential from flags, or many from --file (JSON array or JSON lines)')
    .option('--tenant <name>', 'tenant; with --file, the default for entries without one')
    .option('--connection <name>', 'connection')
    .option('--provider <id>', 'provider id from the providers file; with --file, the default')
    .option('--access-token <token>', 'access token (visible in ps and shell history: prefer --access-token-file)')
    .option('--access-token-file <path>', 'read the access token from a file')
    .option('--refresh-token <token>', 'refresh token (visible in ps and shell history: prefer a file or stdin)')
    .option('--refresh-token-file <path>', 'read the refresh token from a file')
    .option('--refresh-token-stdin', 'read the refresh token from standard input')
    .option('--expires-in <seconds>', 'lifetime of the access token; with --file, the default')
    .option('--expires-at <iso>', 'expiry of the access token as an ISO-8601 timestamp')
    .option('--scope <scope>', 'granted scope, space-separated')
    .option('--token-type <type>', 'token type (default Bearer)')
    .option(
      '--file <path>',
      'bulk import: a JSON array of credentials, or JSON lines; validated before anything is sent',
    )
    .option('--concurrency <n>', 'bulk import: requests in flight (default 32)', integer('--concurrency', 1, 1024))
    .action(action((ctx, flags: Parameters<typeof registerCommand>[0]) => registerCommand(flags, ctx)));
}

/** Reading credentials: one's token (`get`) or metadata (`describe`), and the `list`. */
function addTokenCommands(program: Command): void {
  program
    .command('get')
    .description('the current access token of a credential (masked unless --show-token)')
    .argument('<tenant>')
    .argument('<connection>')
    .option(
      '--min-ttl <seconds>',
      'refresh first unless the token stays valid this long (default 30)',
      integer('--min-ttl', 0, 86_400),
    )
    .option('--show-token', 'print the access token itself')
    .action(
      action((ctx, tenant: string, connection: string, flags: { minTtl?: number; showToken?: boolean }) =>
        getCommand(tenant, connection, flags, ctx),
      ),
    );

  program
    .command('describe')
    .description('metadata of a credential: status, expiry, next refresh, failures, last error (no secrets)')
    .argument('<tenant>')
    .argument('<connection>')
    .action(action((ctx, tenant: string, connection: string) => describeCommand(tenant, connection, ctx)));

  program
    .command('list')
    .description('credentials, one page (--limit, --cursor) or all of them (--all)')
    .option('--tenant <name>', 'only this tenant')
    .addOption(new Option('--status <status>', 'only this status').choices(CREDENTIAL_STATUSES))
    .option('--limit <n>', 'page size, 1 to 1000 (default 100; 1000 with --all)', integer('--limit', 1, 1_000))
    .option('--cursor <cursor>', 'continue after a previous page')
    .option('--all', 'follow nextCursor through every page')
    .option(
      '--expiring-within-days <n>',
      "only credentials whose refresh token's known expiry is at most n days away",
      integer('--expiring-within-days', 0, 3_650),
    )
    .action(action((ctx, flags: Parameters<typeof listCommand>[0]) => listCommand(flags, ctx)));
}

/** Acting on one credential: an admin `refresh` now, or `revoke`. */
function addCredentialActions(program: Command): void {
  program
    .command('refresh')
    .description('refresh a credential now')
    .argument('<tenant>')
    .argument('<connection>')
    .action(action((ctx, tenant: string, connection: string) => refreshCommand(tenant, connection, ctx)));

  program
    .command('revoke')
    .description('revoke a credential (and at the provider, when it has a revocation endpoint)')
    .argument('<tenant>')
    .argument('<connection>')
    .action(action((ctx, tenant: string, connection: string) => revokeCommand(tenant, connection, ctx)));
}

/** What happened: lifecycle events as they come (`watch`) and the audit trail (`audit`). */
function addEventCommands(program: Command): void {
  program
    .command('watch')
    .description('print token.* lifecycle events as they happen, one line each, until Ctrl-C')
    .option('--tenant <name>', 'only this tenant')
    .option('--connection <name>', 'only this connection')
    .addOption(new Option('--kind <kind>', 'only this kind of event').choices(TOKEN_EVENT_KINDS))
    .option('--show-secrets', 'print access tokens instead of masking them')
    .action(action((ctx, flags: Parameters<typeof watchCommand>[0]) => watchCommand(flags, ctx)));

  program
    .command('audit')
    .description('query the audit trail (audit.query, served by the audit service)')
    .option('--tenant <name>', 'only this tenant')
    .option('--connection <name>', 'only this connection')
    .addOption(new Option('--type <type>', 'only this record type').choices(AUDIT_RECORD_TYPES))
    .option('--since <when>', 'ISO-8601 timestamp, or 15m / 2h / 7d ago')
    .option('--limit <n>', 'at most this many records, 1 to 1000', integer('--limit', 1, 1_000))
    .option('--cursor <cursor>', 'continue after a previous page')
    .action(action((ctx, flags: Parameters<typeof auditCommand>[0]) => auditCommand(flags, ctx)));
}

/** `connect`: a one-time link for the browser connect flow, and the wait for it. */
function addConnectCommand(program: Command): void {
  program
    .command('connect')
    .description(
      'print a one-time link that connects a credential through the browser (authorization code + PKCE), and wait for it',
    )
    .argument('<tenant>')
    .argument('<connection>')
    .requiredOption('--provider <id>', 'provider of the providers file (it needs an authorizationUrl)')
    .option('--return-url <url>', 'where the browser goes afterwards (an origin the provider allows)')
    .option(
      '--scopes <list>',
      "scopes to ask for instead of the provider's (within its allowedScopes), comma- or space-separated",
    )
    .option('--display-name <name>', "the tenant's name as the person should see it on the link's page")
    .option('--ttl <seconds>', 'how long the link stays usable, 1 to 3600 (default 900)', integer('--ttl', 1, 3_600))
    .option(
      '--wait <seconds>',
      'how long to wait for the browser (default: until the link expires)',
      integer('--wait', 1, 86_400),
    )
    .action(
      action((ctx, tenant: string, connection: string, flags: ConnectFlags) =>
        connectCommand(tenant, connection, flags, ctx),
      ),
    );
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    // Commander already printed its message; --help and --version are not errors.
    if (error instanceof CommanderError) process.exitCode = error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    else process.exitCode = reportError(error, process.stderr);
  }
  // Ends the process once stdout is flushed, should a handle outlive the command.
  setTimeout(() => process.stdout.write('', () => process.exit()), 2_000).unref();
}

await main(process.argv);
