import {
  adminSubject,
  ConnectPayloadSchema,
  CredentialKeyRequestSchema,
  tokenEventSubject,
  type CredentialKey,
  type CredentialView,
} from '@tokenkeeper/contracts';
import { ExitCode, validateRequest } from './cli.errors.js';
import type { CommandContext } from './nats.session.js';
import { paint, printJson } from './output.format.js';

export interface ConnectFlags {
  provider: string;
  returnUrl?: string;
  scopes?: string;
  ttl?: number;
  /** Shown on the link's page next to the tenant (`metadata.displayName`). */
  displayName?: string;
  /** Seconds to wait for the person to finish in the browser; defaults to the link's lifetime. */
  wait?: number;
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** How often the credential is described while waiting, for users who may not subscribe to events. */
const POLL_INTERVAL_MS = 1_000;

/**
 * `tokenctl connect <tenant> <connection> --provider P`: asks the refresher for a one-time
 * connect URL, prints it, and waits until the credential is registered. Two signals,
 * whichever comes first: the credential's `token.registered` event (subscribed before asking,
 * so that a quick person cannot beat it), and `describe` polled every second, because a tenant
 * admin's NATS user may call the control plane of its tenant but not subscribe to events.
 */
export async function connectCommand(
  tenant: string,
  connection: string,
  flags: ConnectFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  const key = validateRequest(CredentialKeyRequestSchema, { tenant, connection }, 'credential name');
  const payload = validateRequest(
    ConnectPayloadSchema,
    {
      provider: flags.provider,
      ...(flags.returnUrl !== undefined ? { returnUrl: flags.returnUrl } : {}),
      ...(flags.scopes !== undefined ? { scopes: flags.scopes.split(/[ ,]+/).filter(Boolean) } : {}),
      ...(flags.ttl !== undefined ? { ttlSeconds: flags.ttl } : {}),
      ...(flags.displayName !== undefined ? { metadata: { displayName: flags.displayName } } : {}),
    },
    'connect request',
  );
  const session = await ctx.session();
  const registered = session.nc.subscribe(tokenEventSubject('registered', key.tenant, key.connection), { max: 1 });
  const stopped = new AbortController();
  try {
    const baseline = await describeOrNull(session, key);
    const reply = await session.request<{ url: string; expiresAt: string }>(
      adminSubject('connect', key.tenant, key.connection),
      payload,
      key,
    );
    if (ctx.out.json) printJson(ctx.out, { ok: true, url: reply.url, expiresAt: reply.expiresAt });
    else ctx.out.stdout.write(`Open this link in a browser (valid until ${reply.expiresAt}):\n\n  ${reply.url}\n\n`);

    const waitMs = (flags.wait ?? Math.max(1, (Date.parse(reply.expiresAt) - Date.now()) / 1000)) * 1000;
    const connected = await withSpinner(ctx, () =>
      Promise.race([
        eventArrives(registered),
        registrationSeen(session, key, baseline, stopped.signal),
        timeout(waitMs, stopped.signal),
      ]),
    );
    if (!connected) {
      ctx.out.stderr.write(
        `${paint('not connected', 'red', ctx.out.color)}: ${key.tenant}/${key.connection} was not registered within ${Math.round(waitMs / 1000)} s\n`,
      );
      return ExitCode.waitTimedOut;
    }
    if (!ctx.out.json)
      ctx.out.stdout.write(
        `${paint('connected', 'green', ctx.out.color)} ${key.tenant}/${key.connection} (${payload.provider})\n`,
      );
    return ExitCode.ok;
  } finally {
    stopped.abort();
    registered.unsubscribe();
  }
}

type Session = Awaited<ReturnType<CommandContext['session']>>;
type Seen = Pick<CredentialView, 'version' | 'status' | 'lastRefreshedAt' | 'updatedAt'>;

async function describeOrNull(session: Session, key: CredentialKey): Promise<Seen | null> {
  try {
    return (
      await session.request<{ credential: CredentialView }>(
        adminSubject('describe', key.tenant, key.connection),
        key,
        key,
      )
    ).credential;
  } catch (error) {
    if ((error as { code?: string }).code === 'not_found') return null;
    throw error;
  }
}

/** True on the event; never settles when this user may not subscribe (polling then decides). */
function eventArrives(subscription: AsyncIterable<unknown>): Promise<boolean> {
  return (async () => {
    try {
      for await (const _message of subscription) return true;
    } catch {
      // A permissions violation ends the subscription: polling stays.
    }
    return new Promise<boolean>(() => undefined);
  })();
}

/**
 * Polls describe until a registration shows: a version past the last one seen, on an active
 * credential, whose latest change was not a refresh (a refresh stamps lastRefreshedAt with
 * the row's updatedAt; a registration leaves lastRefreshedAt alone). A refresh seen meanwhile
 * moves the baseline. A registration followed by a refresh within one poll is only caught by
 * the event, which needs a token lifetime under a second or two.
 */
async function registrationSeen(
  session: Session,
  key: CredentialKey,
  baseline: Seen | null,
  signal: AbortSignal,
): Promise<boolean> {
  let last = baseline;
  while (!signal.aborted) {
    await sleep(POLL_INTERVAL_MS, signal);
    if (signal.aborted) break;
    let now: Seen | null;
    try {
      now = await describeOrNull(session, key);
    } catch {
      continue; // a lost poll is retried; the timeout bounds the wait
    }
    if (!now || (last && now.version <= last.version)) continue;
    const refreshedLast = now.lastRefreshedAt !== null && now.lastRefreshedAt === now.updatedAt;
    if (now.status === 'active' && !refreshedLast) return true;
    last = now;
  }
  return new Promise<boolean>(() => undefined);
}

function timeout(ms: number, signal: AbortSignal): Promise<boolean> {
  return sleep(ms, signal).then(() => false);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

async function withSpinner<T>(ctx: CommandContext, wait: () => Promise<T>): Promise<T> {
  let frame = 0;
  const spinner = ctx.out.interactive
    ? setInterval(
        () => ctx.out.stderr.write(`\r\u001b[2K${SPINNER[frame++ % SPINNER.length]} waiting for the browser…`),
        120,
      )
    : undefined;
  if (!ctx.out.interactive) ctx.out.stderr.write('waiting for the browser…\n');
  try {
    return await wait();
  } finally {
    if (spinner) {
      clearInterval(spinner);
      ctx.out.stderr.write('\r\u001b[2K');
    }
  }
}
