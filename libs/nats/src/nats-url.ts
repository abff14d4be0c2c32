/**
 * NATS_URL rules, shared by every app: `nats://host:port` (the scheme may be left out, as
 * the nats CLI allows), comma-separated for a cluster. Credentials written into the URL
 * (`nats://user:pass@host`, `nats://token@host`) are taken out of it, so that what the
 * apps hold and log as "servers" never carries a secret.
 */

const SERVER = /^((nats|tls|ws|wss):\/\/)?([^\s/@]*@)?[^\s/@]+\/?$/;
const USER_INFO = /\/\/[^/@\s]*@/g;

export interface ParsedServers {
  /** Server URLs without user info. */
  servers: string[];
  /** Credentials found in the first URL that carries any. */
  embedded?: { user: string; pass?: string };
}

/** Null when the list is empty or an entry is not a server URL. */
export function parseServers(url: string): ParsedServers | null {
  const entries = url
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.length === 0 || entries.some((s) => !SERVER.test(s))) return null;
  let embedded: ParsedServers['embedded'];
  for (const entry of entries) {
    embedded ??= userInfo(entry);
  }
  return { servers: entries.map((s) => s.replace(/^([a-z]+:\/\/)?[^/@\s]*@/, '$1')), embedded };
}

function userInfo(server: string): { user: string; pass?: string } | undefined {
  const match = /^(?:[a-z]+:\/\/)?([^/@\s]*)@/.exec(server);
  if (!match || match[1] === '') return undefined;
  const [user, ...rest] = match[1].split(':');
  return { user: safeDecode(user), pass: rest.length > 0 ? safeDecode(rest.join(':')) : undefined };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A URL (or comma-separated list) fit for a log line or message: any `user:pass@` becomes `***@`. */
export function redactUrl(url: string): string {
  return url.replace(USER_INFO, '//***@').replace(/^[^/@\s:]*(:[^/@\s]*)?@/, '***@');
}

/** Servers fit for a log line. */
export function redactServers(servers: readonly string[]): string[] {
  return servers.map(redactUrl);
}
