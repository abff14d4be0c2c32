import { readFile } from 'node:fs/promises';
import { adminSubject, TokenRegisterRequestSchema, type CredentialView } from '@tokenkeeper/contracts';
import { UsageError, validateRequest, type ExitCode } from './cli.errors.js';
import { DEFAULT_CONCURRENCY, runBulkImport } from './bulk-import.runner.js';
import type { CommandContext } from './nats.session.js';
import { paint, printJson, renderCredential } from './output.format.js';

export interface RegisterFlags {
  tenant?: string;
  connection?: string;
  provider?: string;
  accessToken?: string;
  accessTokenFile?: string;
  refreshToken?: string;
  refreshTokenFile?: string;
  refreshTokenStdin?: boolean;
  expiresIn?: string;
  expiresAt?: string;
  scope?: string;
  tokenType?: string;
  file?: string;
  concurrency?: number;
}

const SECRET_FLAGS: [keyof RegisterFlags, string][] = [
  ['accessToken', '--access-token'],
  ['accessTokenFile', '--access-token-file'],
  ['refreshToken', '--refresh-token'],
  ['refreshTokenFile', '--refresh-token-file'],
  ['refreshTokenStdin', '--refresh-token-stdin'],
];

/** `tokenctl register`: one credential from flags, or many from `--file`. */
export async function registerCommand(flags: RegisterFlags, ctx: CommandContext): Promise<ExitCode> {
  if (flags.file !== undefined) return registerFromFile(flags, ctx);

  const missing = (['tenant', 'connection', 'provider'] as const)
    .filter((f) => flags[f] === undefined)
    .map((f) => `--${f}`);
  if (missing.length > 0) {
    throw new UsageError(
      `register: missing ${missing.join(', ')}`,
      'give --tenant, --connection and --provider (and tokens), or --file creds.jsonl to import many',
    );
  }
  only(flags, ['accessToken', 'accessTokenFile']);
  only(flags, ['refreshToken', 'refreshTokenFile', 'refreshTokenStdin']);
  if (flags.accessToken !== undefined || flags.refreshToken !== undefined) {
    ctx.out.stderr.write(
      'tokenctl: warning: a token on the command line is visible in `ps` and kept in shell history; prefer --access-token-file, --refresh-token-file or --refresh-token-stdin\n',
    );
  }

  const request = validateRequest(
    TokenRegisterRequestSchema,
    dropUndefined({
      tenant: flags.tenant,
      connection: flags.connection,
      provider: flags.provider,
      accessToken:
        flags.accessToken ??
        (flags.accessTokenFile !== undefined
          ? await readSecretFile(flags.accessTokenFile, '--access-token-file')
          : undefined),
      refreshToken:
        flags.refreshToken ??
        (flags.refreshTokenFile !== undefined
          ? await readSecretFile(flags.refreshTokenFile, '--refresh-token-file')
          : flags.refreshTokenStdin
            ? await readSecretStdin(ctx)
            : undefined),
      expiresIn: numeric(flags.expiresIn),
      expiresAt: flags.expiresAt,
      scope: flags.scope,
      tokenType: flags.tokenType,
    }),
    'register request',
  );

  const session = await ctx.session();
  const reply = await session.request<{ credential: CredentialView }>(
    adminSubject('register', request.tenant, request.connection),
    request,
    request,
  );
  if (ctx.out.json) {
    printJson(ctx.out, reply);
  } else {
    ctx.out.stdout.write(`${paint('registered', 'green', ctx.out.color)} ${request.tenant}/${request.connection}\n`);
    ctx.out.stdout.write(renderCredential(reply.credential, ctx.out.color));
  }
  return 0;
}

async function registerFromFile(flags: RegisterFlags, ctx: CommandContext): Promise<ExitCode> {
  const conflicting = [
    ...SECRET_FLAGS,
    ['connection', '--connection'] as [keyof RegisterFlags, string],
    ['expiresAt', '--expires-at'] as [keyof RegisterFlags, string],
  ]
    .filter(([key]) => flags[key] !== undefined && flags[key] !== false)
    .map(([, flag]) => flag);
  if (conflicting.length > 0) {
    throw new UsageError(
      `register --file: ${conflicting.join(', ')} cannot be combined with --file`,
      'put tokens and connections in the file; --tenant, --provider, --expires-in, --scope and --token-type fill entries that lack them',
    );
  }
  const concurrency = flags.concurrency ?? DEFAULT_CONCURRENCY;
  const expiresIn = numeric(flags.expiresIn);
  if (expiresIn !== undefined && typeof expiresIn !== 'number')
    throw new UsageError('--expires-in must be a number of seconds');
  return runBulkImport(() => ctx.session(), ctx.out, {
    file: flags.file!,
    concurrency,
    defaults: dropUndefined({
      tenant: flags.tenant,
      provider: flags.provider,
      expiresIn,
      scope: flags.scope,
      tokenType: flags.tokenType,
    }),
  });
}

function only(flags: RegisterFlags, keys: (keyof RegisterFlags)[]): void {
  const given = SECRET_FLAGS.filter(
    ([key]) => keys.includes(key) && flags[key] !== undefined && flags[key] !== false,
  ).map(([, flag]) => flag);
  if (given.length > 1) throw new UsageError(`register: ${given.join(' and ')} are alternatives; give one`);
}

/** `"3600"` → 3600; anything else is left for the contract schema to reject by name. */
function numeric(value: string | undefined): number | string | undefined {
  if (value === undefined) return undefined;
  return /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
}

function dropUndefined<T extends Record<string, unknown>>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** A token from a file: surrounding whitespace (the trailing newline) removed. */
async function readSecretFile(path: string, flag: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`${flag}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const secret = text.trim();
  if (secret === '') throw new UsageError(`${flag}: ${path} is empty`);
  if (/\s/.test(secret)) throw new UsageError(`${flag}: ${path} must hold one token (it has whitespace inside)`);
  return secret;
}

async function readSecretStdin(ctx: CommandContext): Promise<string> {
  if (process.stdin.isTTY) ctx.out.stderr.write('paste the refresh token, then press Enter and Ctrl-D: ');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer | string>)
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  const secret = Buffer.concat(chunks).toString('utf8').trim();
  if (secret === '') throw new UsageError('--refresh-token-stdin: nothing was read from standard input');
  if (/\s/.test(secret))
    throw new UsageError('--refresh-token-stdin: standard input must hold one token (it has whitespace inside)');
  return secret;
}
