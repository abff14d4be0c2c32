import { adminSubject, ConnectPayloadSchema, CredentialKeyRequestSchema, tokenEventSubject } from '@tokenkeeper/contracts';
import { ExitCode, validateRequest } from './cli.errors.js';
import type { CommandContext } from './nats.session.js';
import { paint, printJson } from './output.format.js';

export interface ConnectFlags {
  provider: string;
  returnUrl?: string;
  scopes?: string;
  ttl?: number;
  /** Seconds to wait for the person to finish in the browser; defaults to the link's lifetime. */
  wait?: number;
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * `tokenctl connect <tenant> <connection> --provider P`: asks the refresher for a one-time
 * connect URL (SPEC §12), prints it, and waits for the credential's `token.registered`
 * event, subscribed before asking so that a quick person cannot beat it.
 */
export async function connectCommand(tenant: string, connection: string, flags: ConnectFlags, ctx: CommandContext): Promise<ExitCode> {
  const key = validateRequest(CredentialKeyRequestSchema, { tenant, connection }, 'credential name');
  const payload = validateRequest(
    ConnectPayloadSchema,
    {
      provider: flags.provider,
      ...(flags.returnUrl !== undefined ? { returnUrl: flags.returnUrl } : {}),
      ...(flags.scopes !== undefined ? { scopes: flags.scopes.split(/[ ,]+/).filter(Boolean) } : {}),
      ...(flags.ttl !== undefined ? { ttlSeconds: flags.ttl } : {}),
    },
    'connect request',
  );
  const session = await ctx.session();
  const registered = session.nc.subscribe(tokenEventSubject('registered', key.tenant, key.connection), { max: 1 });
  try {
    const reply = await session.request<{ url: string; expiresAt: string }>(adminSubject('connect', key.tenant, key.connection), payload, key);
    if (ctx.out.json) printJson(ctx.out, { ok: true, url: reply.url, expiresAt: reply.expiresAt });
    else ctx.out.stdout.write(`Open this link in a browser (valid until ${reply.expiresAt}):\n\n  ${reply.url}\n\n`);

    const waitMs = (flags.wait ?? Math.max(1, (Date.parse(reply.expiresAt) - Date.now()) / 1000)) * 1000;
    const connected = await waitForEvent(registered, waitMs, ctx);
    if (!connected) {
      ctx.out.stderr.write(`${paint('not connected', 'red', ctx.out.color)}: no token.registered for ${key.tenant}/${key.connection} within ${Math.round(waitMs / 1000)} s\n`);
      return ExitCode.waitTimedOut;
    }
    if (!ctx.out.json) ctx.out.stdout.write(`${paint('connected', 'green', ctx.out.color)} ${key.tenant}/${key.connection} (${payload.provider})\n`);
    return ExitCode.ok;
  } finally {
    registered.unsubscribe();
  }
}

async function waitForEvent(subscription: AsyncIterable<unknown>, waitMs: number, ctx: CommandContext): Promise<boolean> {
  let frame = 0;
  const spinner = ctx.out.interactive
    ? setInterval(() => ctx.out.stderr.write(`\r\u001b[2K${SPINNER[frame++ % SPINNER.length]} waiting for the browser…`), 120)
    : undefined;
  if (!ctx.out.interactive) ctx.out.stderr.write('waiting for the browser…\n');
  let timer: NodeJS.Timeout | undefined;
  try {
    const event = (async () => {
      for await (const _message of subscription) return true;
      return false;
    })();
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)));
    return await Promise.race([event, timeout]);
  } finally {
    clearTimeout(timer);
    if (spinner) {
      clearInterval(spinner);
      ctx.out.stderr.write('\r\u001b[2K');
    }
  }
}
