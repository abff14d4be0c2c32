import {
  AuditQueryRequestSchema,
  auditQuerySubject,
  isValidName,
  parseTokenEventSubject,
  tokenEventFilter,
  type AuditRecord,
  type AuditRecordType,
  TOKEN_EVENT_KINDS,
  type TokenEventKind,
} from '@tokenkeeper/contracts';
import type { Msg } from '@nats-io/transport-node';
import { UsageError, validateRequest, type ExitCode } from './cli.errors.js';
import type { CommandContext } from './nats.session.js';
import { AUDIT_COLUMNS, auditRow, maskSecret, paint, printJson, relativeTime, renderTable } from './output.format.js';

export interface WatchFlags {
  tenant?: string;
  connection?: string;
  kind?: TokenEventKind;
  showSecrets?: boolean;
}

/**
 * `tokenctl watch`: subscribes to the `token.*` lifecycle events and prints one line per
 * event until Ctrl-C. Access tokens are masked unless `--show-secrets`. Core NATS events
 * are at-most-once: what is published while disconnected is not replayed.
 */
export async function watchCommand(flags: WatchFlags, ctx: CommandContext): Promise<ExitCode> {
  for (const [flag, value] of [
    ['--tenant', flags.tenant],
    ['--connection', flags.connection],
  ] as const) {
    if (value !== undefined && !isValidName(value)) {
      throw new UsageError(
        `${flag} must match ^[A-Za-z0-9_-]{1,128}$ (wildcards are not accepted; leave it out to watch all)`,
      );
    }
  }
  // The four event types one by one, never `token.*.…`: that is what the operator's and a
  // consumer's permissions allow, and a wildcard type would be refused.
  const subjects = (flags.kind ? [flags.kind] : TOKEN_EVENT_KINDS).map((kind) =>
    tokenEventFilter(kind, flags.tenant ?? '*', flags.connection ?? '*'),
  );
  const session = await ctx.session({ reconnectForever: true });
  const { nc } = session;
  const messages = new EventQueue();
  const subs = subjects.map((subject) =>
    nc.subscribe(subject, { callback: (error, msg) => messages.push(error, msg) }),
  );
  await nc.flush();
  ctx.out.stderr.write(`watching ${subjects.join(', ')} on ${session.url} (Ctrl-C to stop)\n`);
  // A refused subscription closes with the server's permission violation: stop, and say so.
  for (const sub of subs)
    void sub.closed.then(
      (reason) => reason instanceof Error && messages.end(reason),
      (error: unknown) => messages.end(error),
    );
  void Promise.all(subs.map((sub) => sub.closed.catch(() => undefined))).then(() => messages.end());

  let interrupted = false;
  const stop = () => {
    interrupted = true;
    void session.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect')
        ctx.out.stderr.write(`disconnected from NATS; reconnecting (events published meanwhile are missed)\n`);
      else if (status.type === 'reconnect') ctx.out.stderr.write(`reconnected to NATS\n`);
    }
  })().catch(() => undefined);

  for await (const msg of messages) {
    const parts = parseTokenEventSubject(msg.subject);
    let event: Record<string, unknown>;
    try {
      event = msg.json<Record<string, unknown>>();
    } catch {
      ctx.out.stderr.write(`${msg.subject}: payload is not JSON; skipped\n`);
      continue;
    }
    if (!parts || event === null || typeof event !== 'object') continue;
    if (!flags.showSecrets && typeof event.accessToken === 'string')
      event = { ...event, accessToken: maskSecret(event.accessToken) };
    // One JSON object a line (even on a terminal), so that `| jq` can follow the stream.
    if (ctx.out.json) ctx.out.stdout.write(`${JSON.stringify({ subject: msg.subject, kind: parts.kind, ...event })}\n`);
    else ctx.out.stdout.write(`${eventLine(parts.kind, event, ctx.out.color)}\n`);
  }
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  if (interrupted) return 0;
  if (messages.error) throw session.transportError(subjects.join(', '), messages.error);
  ctx.out.stderr.write(`tokenctl: the NATS connection closed\n`);
  return 3;
}

/** The messages of several subscriptions as one stream, in arrival order; ends when they all close. */
class EventQueue implements AsyncIterable<Msg> {
  private readonly queued: Msg[] = [];
  private wake?: () => void;
  private ended = false;
  error?: unknown;

  push(error: Error | null, msg: Msg): void {
    if (error) return this.end(error);
    this.queued.push(msg);
    this.wake?.();
  }

  end(error?: unknown): void {
    this.error ??= error;
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Msg> {
    for (;;) {
      const next = this.queued.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

/** A field of a decoded event as text; only what was masked as a string may print as one. */
function field(value: unknown): string {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
    ? String(value)
    : JSON.stringify(value);
}

function eventLine(kind: TokenEventKind, e: Record<string, unknown>, color: boolean): string {
  const at = new Date().toISOString();
  const head = `${paint(at, 'dim', color)}  ${paint(kind.padEnd(10), kind === 'failed' || kind === 'revoked' ? 'red' : 'green', color)}  ${field(e.tenant)}/${field(e.connection)}  v${field(e.version)}  ${field(e.provider)}`;
  switch (kind) {
    case 'registered':
    case 'refreshed': {
      const expires = typeof e.expiresAt === 'string' ? `expires ${relativeTime(e.expiresAt)}` : 'no expiry';
      return `${head}  ${field(e.tokenType)}  ${expires}  token ${typeof e.accessToken === 'string' ? e.accessToken : '—'}`;
    }
    case 'failed': {
      const retry = typeof e.retryAt === 'string' ? `, retry ${relativeTime(e.retryAt)}` : '';
      return `${head}  ${paint(String(e.code), 'red', color)} (attempt ${field(e.attempt)}, status ${field(e.status)}${retry}): ${field(e.message)}`;
    }
    case 'revoked':
      return head;
    case 'recovered':
      return `${head}  failing since ${field(e.failedSince)}, ${field(e.attempts)} attempts`;
    case 'expiring':
      return `${head}  ${paint('refresh token expires', 'red', color)} ${field(e.refreshTokenExpiresAt)}`;
  }
}

export interface AuditFlags {
  tenant?: string;
  connection?: string;
  type?: AuditRecordType;
  since?: string;
  limit?: number;
  cursor?: string;
}

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since 15m|2h|7d` becomes an ISO timestamp; an ISO timestamp passes as is. */
export function parseSince(value: string, now = Date.now()): string {
  const relative = /^(\d+)([smhd])$/.exec(value.trim());
  return relative ? new Date(now - Number(relative[1]) * UNIT_MS[relative[2]]).toISOString() : value;
}

/**
 * `tokenctl audit`: asks the audit service (`audit.query[.<tenant>]`) for lifecycle records and
 * prints their `items`. The records are secret-free by contract.
 */
export async function auditCommand(flags: AuditFlags, ctx: CommandContext): Promise<ExitCode> {
  const request = validateRequest(
    AuditQueryRequestSchema,
    Object.fromEntries(
      Object.entries({
        tenant: flags.tenant,
        connection: flags.connection,
        type: flags.type,
        since: flags.since === undefined ? undefined : parseSince(flags.since),
        limit: flags.limit,
        cursor: flags.cursor,
      }).filter(([, v]) => v !== undefined),
    ),
    'audit query',
  );
  const session = await ctx.session();
  // With --tenant, the tenant's own subject, so a tenant admin's permissions suffice.
  const reply = await session.request<{ items?: Partial<AuditRecord>[]; nextCursor?: string }>(
    auditQuerySubject(request.tenant),
    request,
    request,
  );
  if (ctx.out.json) {
    printJson(ctx.out, reply);
    return 0;
  }
  const items = Array.isArray(reply.items) ? reply.items : [];
  if (items.length === 0) ctx.out.stdout.write('no audit records\n');
  else ctx.out.stdout.write(renderTable(AUDIT_COLUMNS, items.map(auditRow), ctx.out.color));
  if (typeof reply.nextCursor === 'string')
    ctx.out.stderr.write(`more: add --cursor ${reply.nextCursor} for the next page\n`);
  return 0;
}
