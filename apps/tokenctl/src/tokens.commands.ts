import {
  adminListSubject,
  adminSubject,
  CredentialKeyRequestSchema,
  TokenGetRequestSchema,
  TokenListRequestSchema,
  type CredentialStatus,
  type CredentialView,
  type TokenListRequest,
  type TokenView,
  tokenGetSubject,
} from '@tokenkeeper/contracts';
import { validateRequest, type ExitCode } from './cli.errors.js';
import type { CommandContext } from './nats.session.js';
import { ProgressLine } from './bulk-import.runner.js';
import {
  count,
  credentialRow,
  CREDENTIAL_COLUMNS,
  maskSecret,
  paint,
  printJson,
  renderCredential,
  renderTable,
  renderToken,
  when,
} from './output.format.js';

/** Page size of `list --all` unless `--limit` says otherwise: the contract's maximum. */
const ALL_PAGE_SIZE = 1_000;

function key(tenant: string, connection: string) {
  return validateRequest(CredentialKeyRequestSchema, { tenant, connection }, 'credential name');
}

/** `tokenctl get <tenant> <connection>`: the current access token, masked unless asked. */
export async function getCommand(
  tenant: string,
  connection: string,
  flags: { minTtl?: number; showToken?: boolean },
  ctx: CommandContext,
): Promise<ExitCode> {
  const request = validateRequest(
    TokenGetRequestSchema,
    { tenant, connection, ...(flags.minTtl !== undefined ? { minTtlSeconds: flags.minTtl } : {}) },
    'get request',
  );
  const session = await ctx.session();
  // The subject names the credential; the payload carries only the options.
  const body = request.minTtlSeconds !== undefined ? { minTtlSeconds: request.minTtlSeconds } : {};
  const reply = await session.request<{ token: TokenView }>(
    tokenGetSubject(request.tenant, request.connection),
    body,
    request,
  );
  if (ctx.out.json) {
    printJson(
      ctx.out,
      flags.showToken
        ? reply
        : { ...reply, token: { ...reply.token, accessToken: maskSecret(reply.token.accessToken) } },
    );
  } else {
    ctx.out.stdout.write(renderToken(reply.token, Boolean(flags.showToken), ctx.out.color));
  }
  return 0;
}

/** `tokenctl describe <tenant> <connection>`: metadata, schedule and last error. */
export async function describeCommand(tenant: string, connection: string, ctx: CommandContext): Promise<ExitCode> {
  const request = key(tenant, connection);
  const session = await ctx.session();
  const reply = await session.request<{ credential: CredentialView }>(
    adminSubject('describe', request.tenant, request.connection),
    request,
    request,
  );
  if (ctx.out.json) printJson(ctx.out, reply);
  else ctx.out.stdout.write(renderCredential(reply.credential, ctx.out.color));
  return 0;
}

/** `tokenctl refresh <tenant> <connection>`: refresh now, through the refresher. */
export async function refreshCommand(tenant: string, connection: string, ctx: CommandContext): Promise<ExitCode> {
  const request = key(tenant, connection);
  const session = await ctx.session();
  const reply = await session.request<{ credential: CredentialView }>(
    adminSubject('refresh', request.tenant, request.connection),
    request,
    request,
  );
  if (ctx.out.json) {
    printJson(ctx.out, reply);
  } else {
    const c = reply.credential;
    ctx.out.stdout.write(
      `${paint('refreshed', 'green', ctx.out.color)} ${c.tenant}/${c.connection}: version ${c.version}, expires ${when(c.expiresAt, 'never')}\n`,
    );
  }
  return 0;
}

/** `tokenctl revoke <tenant> <connection>`: revoke here and at the provider when it has an endpoint. */
export async function revokeCommand(tenant: string, connection: string, ctx: CommandContext): Promise<ExitCode> {
  const request = key(tenant, connection);
  const session = await ctx.session();
  const reply = await session.request<{ providerRevoked?: boolean }>(
    adminSubject('revoke', request.tenant, request.connection),
    request,
    request,
  );
  if (ctx.out.json) {
    printJson(ctx.out, reply);
  } else {
    const atProvider =
      reply.providerRevoked === true
        ? 'also revoked at the provider'
        : 'the provider has no revocation endpoint configured (or did not confirm)';
    ctx.out.stdout.write(`${paint('revoked', 'red', ctx.out.color)} ${tenant}/${connection}: ${atProvider}\n`);
  }
  return 0;
}

export interface ListFlags {
  tenant?: string;
  status?: CredentialStatus;
  limit?: number;
  cursor?: string;
  all?: boolean;
  expiringWithinDays?: number;
}

/** `tokenctl list`: one page, or every page with `--all` (following `nextCursor`). */
export async function listCommand(flags: ListFlags, ctx: CommandContext): Promise<ExitCode> {
  const base: TokenListRequest = validateRequest(
    TokenListRequestSchema,
    Object.fromEntries(
      Object.entries({
        tenant: flags.tenant,
        status: flags.status,
        expiringWithinDays: flags.expiringWithinDays,
        limit: flags.limit ?? (flags.all ? ALL_PAGE_SIZE : undefined),
        cursor: flags.cursor,
      }).filter(([, v]) => v !== undefined),
    ),
    'list request',
  );
  const session = await ctx.session();
  // With --tenant, the tenant's own subject: a tenant admin's permissions reach it.
  const subject = adminListSubject(base.tenant);
  type Page = { items: CredentialView[]; nextCursor?: string };

  if (!flags.all) {
    const reply = await session.request<Page>(subject, base);
    if (ctx.out.json) {
      printJson(ctx.out, reply);
      return 0;
    }
    writeTable(reply.items, ctx);
    if (reply.nextCursor) {
      ctx.out.stderr.write(`more: add --cursor ${reply.nextCursor} for the next page, or --all for every page\n`);
    }
    return 0;
  }

  const items: CredentialView[] = [];
  const progress = new ProgressLine(ctx.out, 'listing', 0);
  let cursor = base.cursor;
  for (;;) {
    const reply = await session.request<Page>(subject, { ...base, ...(cursor ? { cursor } : {}) });
    items.push(...reply.items);
    if (ctx.out.interactive) ctx.out.stderr.write(`\r\u001b[2Klisting… ${count(items.length)}`);
    if (!reply.nextCursor || reply.items.length === 0) break;
    cursor = reply.nextCursor;
  }
  progress.clear();
  if (ctx.out.json) printJson(ctx.out, { ok: true, items });
  else writeTable(items, ctx);
  return 0;
}

function writeTable(items: CredentialView[], ctx: CommandContext): void {
  if (items.length === 0) {
    ctx.out.stdout.write('no credentials\n');
    return;
  }
  ctx.out.stdout.write(renderTable(CREDENTIAL_COLUMNS, items.map(credentialRow), ctx.out.color));
  const byStatus = new Map<string, number>();
  for (const c of items) byStatus.set(c.status, (byStatus.get(c.status) ?? 0) + 1);
  const breakdown = [...byStatus].map(([s, n]) => `${count(n)} ${s}`).join(', ');
  ctx.out.stdout.write(
    paint(`${count(items.length)} credential${items.length === 1 ? '' : 's'} (${breakdown})`, 'dim', ctx.out.color) +
      '\n',
  );
}
