import { CREDENTIAL_STATUSES, type CredentialStatus, type TokenView } from './messages.js';
import { isValidName } from './names.js';
import { parseTokenEventSubject, type TokenEventKind } from './subjects.js';

/**
 * Validation of `token.*` events and `token.get` replies, shared by every reader (the
 * client library, the refresher's replicas). Hand-written checks instead of zod: pushed
 * events arrive for every credential of every subscribed tenant, and a few `typeof` tests cost far less than a schema
 * parse. Anything that fails is dropped and counted, never thrown, because a bad
 * publisher must not break the consumer's cache.
 */

/** A token as validated from the wire, with its expiry already in epoch ms. */
export interface ValidatedToken {
  view: TokenView;
  /** `Infinity` for `expiresAt: null`: such a token is served until replaced. */
  expiresAtMs: number;
}

export type TokenEvent =
  | {
      kind: 'refreshed' | 'registered';
      token: ValidatedToken;
      /** `refreshedAt` in epoch ms, NaN when absent or unreadable (readers that need it fall back to now). */
      refreshedAtMs: number;
    }
  | { kind: 'failed'; tenant: string; connection: string; version: number; status: CredentialStatus; code?: string }
  | { kind: 'revoked'; tenant: string; connection: string; version: number }
  | {
      kind: 'recovered';
      tenant: string;
      connection: string;
      version: number;
      /** ISO-8601, as sent. */
      failedSince: string;
      attempts: number;
    }
  | { kind: 'expiring'; tenant: string; connection: string; version: number; refreshTokenExpiresAt: string };

const decoder = new TextDecoder();

/** Bounds of a token's `extras`: what a reader keeps in memory per credential stays small. */
export const MAX_EXTRAS = 32;
export const MAX_EXTRA_KEY_LENGTH = 128;
export const MAX_EXTRA_VALUE_LENGTH = 2_048;

/** A frozen copy of a valid `extras` map, `undefined` for none, `null` when it breaks the bounds. */
function validExtras(value: unknown): Readonly<Record<string, string>> | undefined | null {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > MAX_EXTRAS) return null;
  const copy: Record<string, string> = {};
  for (const [key, v] of entries) {
    if (key.length === 0 || key.length > MAX_EXTRA_KEY_LENGTH) return null;
    if (typeof v !== 'string' || v.length > MAX_EXTRA_VALUE_LENGTH) return null;
    copy[key] = v;
  }
  return Object.freeze(copy);
}

function isVersion(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isShortString(value: unknown, max: number): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= max;
}

/**
 * Validates a token as found in a `token.get` reply or a refreshed/registered event
 * and copies only the contract's fields, so that an event's `eventId`/`refreshedAt`
 * or unknown extras are not kept in memory. The copy is frozen because the same
 * object is handed to every caller of `getToken`.
 */
export function validateTokenView(raw: unknown): ValidatedToken | null {
  if (raw === null || typeof raw !== 'object') return null;
  const t = raw as Record<string, unknown>;
  if (!isValidName(t.tenant) || !isValidName(t.connection)) return null;
  if (!isShortString(t.provider, 128) || !isShortString(t.accessToken, 16_384)) return null;
  if (!isShortString(t.tokenType, 64) || !isVersion(t.version)) return null;
  if (t.scope !== undefined && typeof t.scope !== 'string') return null;
  const extras = validExtras(t.extras);
  if (extras === null) return null;
  let expiresAtMs = Infinity;
  if (t.expiresAt !== null) {
    if (typeof t.expiresAt !== 'string') return null;
    expiresAtMs = Date.parse(t.expiresAt);
    if (Number.isNaN(expiresAtMs)) return null;
  }
  const view: TokenView = {
    tenant: t.tenant,
    connection: t.connection,
    provider: t.provider,
    accessToken: t.accessToken,
    tokenType: t.tokenType,
    expiresAt: t.expiresAt,
    version: t.version,
  };
  if (t.scope !== undefined) view.scope = t.scope;
  if (extras !== undefined) view.extras = extras;
  return { view: Object.freeze(view), expiresAtMs };
}

function isTimestamp(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 64 && !Number.isNaN(Date.parse(value));
}

function parseJson(data: Uint8Array): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(decoder.decode(data));
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/**
 * Parses one pushed event. The subject is authoritative for kind and identity: a
 * payload that names another credential than its subject is refused, so a
 * publisher allowed on one tenant's subjects cannot write another tenant's entry.
 */
export function parseTokenEvent(subject: string, data: Uint8Array): TokenEvent | null {
  const parts = parseTokenEventSubject(subject);
  if (parts === null || !isValidName(parts.tenant) || !isValidName(parts.connection)) return null;
  const body = parseJson(data);
  if (body === null) return null;
  if (body.tenant !== parts.tenant || body.connection !== parts.connection) return null;
  const kind: TokenEventKind = parts.kind;
  switch (kind) {
    case 'refreshed':
    case 'registered': {
      const token = validateTokenView(body);
      if (token === null) return null;
      return {
        kind,
        token,
        refreshedAtMs: typeof body.refreshedAt === 'string' ? Date.parse(body.refreshedAt) : Number.NaN,
      };
    }
    case 'failed': {
      if (!isVersion(body.version)) return null;
      const status = body.status as CredentialStatus;
      if (!CREDENTIAL_STATUSES.includes(status)) return null;
      const failed: TokenEvent = {
        kind,
        tenant: parts.tenant,
        connection: parts.connection,
        version: body.version,
        status,
      };
      if (typeof body.code === 'string') failed.code = body.code;
      return failed;
    }
    case 'revoked': {
      if (!isVersion(body.version)) return null;
      return { kind, tenant: parts.tenant, connection: parts.connection, version: body.version };
    }
    case 'recovered': {
      if (!isVersion(body.version) || !isVersion(body.attempts) || !isTimestamp(body.failedSince)) return null;
      const { version, attempts, failedSince } = body;
      return { kind, tenant: parts.tenant, connection: parts.connection, version, failedSince, attempts };
    }
    case 'expiring': {
      if (!isVersion(body.version) || !isTimestamp(body.refreshTokenExpiresAt)) return null;
      const { version, refreshTokenExpiresAt } = body;
      return { kind, tenant: parts.tenant, connection: parts.connection, version, refreshTokenExpiresAt };
    }
    default:
      return null;
  }
}
