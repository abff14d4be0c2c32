import type { NatsConnection } from '@nats-io/transport-node';
import { adminSubject, CONNECT_MAX_TTL_SECONDS, tokenEventSubject, type CredentialKey } from '@tokenkeeper/contracts';
import type { DemoLog } from './demo-log.js';

export type ConnectOutcome = { connected: true; version: number } | { connected: false; reason: string };

/**
 * DEMO_CONNECT: the credential's first grant comes from a person in a browser
 * instead of the sandbox handing one over. Asks the refresher for a one-time link as the
 * operator (what `tokenctl connect` does), prints it where nobody can miss it, and waits for
 * the credential's `token.registered`, subscribed before asking so that a quick click
 * cannot beat it.
 */
export async function connectThroughBrowser(
  nc: NatsConnection,
  key: CredentialKey,
  options: { provider: string; waitSeconds: number; log: DemoLog; signal: AbortSignal },
): Promise<ConnectOutcome> {
  const registered = nc.subscribe(tokenEventSubject('registered', key.tenant, key.connection), { max: 1 });
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const ttlSeconds = Math.min(CONNECT_MAX_TTL_SECONDS, Math.max(60, Math.ceil(options.waitSeconds) + 30));
    const reply = (
      await nc.request(
        adminSubject('connect', key.tenant, key.connection),
        JSON.stringify({ provider: options.provider, ttlSeconds }),
        { timeout: 10_000 },
      )
    ).json<{ ok: boolean; url?: string; expiresAt?: string; error?: { code: string; message: string } }>();
    if (!reply.ok || !reply.url)
      return { connected: false, reason: `connect refused: ${reply.error?.code} ${reply.error?.message}` };

    const rule = '*'.repeat(72);
    process.stdout.write(
      `\n${rule}\n  Connect ${key.tenant}/${key.connection}: open this in a browser (valid until ${reply.expiresAt}):\n\n    ${reply.url}\n\n` +
        `  The page names what is being connected: press its button, then Allow on the sandbox's consent page.\n${rule}\n\n`,
    );
    options.log.line('demo', `waiting up to ${options.waitSeconds} s for the browser…`);

    const event = (async (): Promise<ConnectOutcome> => {
      for await (const msg of registered) return { connected: true, version: msg.json<{ version: number }>().version };
      return { connected: false, reason: 'event subscription closed' };
    })();
    const bounded = new Promise<ConnectOutcome>((resolve) => {
      timer = setTimeout(
        () =>
          resolve({
            connected: false,
            reason: `nobody connected ${key.tenant}/${key.connection} within ${options.waitSeconds} s`,
          }),
        options.waitSeconds * 1000,
      );
      onAbort = () => resolve({ connected: false, reason: 'interrupted while waiting for the browser' });
      options.signal.addEventListener('abort', onAbort, { once: true });
    });
    return await Promise.race([event, bounded]);
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal.removeEventListener('abort', onAbort);
    registered.unsubscribe();
  }
}
