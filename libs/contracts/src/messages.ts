import { z } from 'zod';
import { ContractError, type ErrorBody } from './errors.js';
import { NAME_PATTERN, NAME_RULE, type CredentialKey } from './names.js';
import { AUDIT_RECORD_TYPES } from './subjects.js';
import {
  assertPayloadMatchesSubject,
  parseAdminListSubject,
  parseAdminSubject,
  parseAuditQuerySubject,
  parseTokenGetSubject,
} from './wire-subjects.js';

const name = (what: string) =>
  z.string({ error: `${what} must be a string` }).regex(NAME_PATTERN, `${what} must match ${NAME_RULE}`);
const tenant = name('tenant');
const connection = name('connection');
const providerId = name('provider');
const isoTimestamp = z.iso.datetime({ offset: true, error: 'must be an ISO-8601 timestamp' });
/** Secrets are bounded so that a hostile register cannot fill the database. */
const secretString = z.string().min(1).max(16_384);

export const CREDENTIAL_STATUSES = ['active', 'failing', 'reauth_required', 'revoked'] as const;
export type CredentialStatus = (typeof CREDENTIAL_STATUSES)[number];

/** Upper bound of `minTtlSeconds`: one day. */
export const MAX_MIN_TTL_SECONDS = 86_400;

/** `token.get` answers with a token valid at least this long when the request names no minTtlSeconds. */
export const DEFAULT_MIN_TTL_SECONDS = 30;

/**
 * `token.get.<tenant>.<connection>` payload (`{minTtlSeconds?, rejectedVersion?}`,
 * an empty payload is `{}`): lenient about unknown fields so that newer clients work with
 * older refreshers. The subject names the credential; a payload may repeat
 * `tenant`/`connection`, and then they must equal the subject's.
 */
export const TokenGetPayloadSchema = z.object({
  tenant: tenant.optional(),
  connection: connection.optional(),
  minTtlSeconds: z.number().int().min(0).max(MAX_MIN_TTL_SECONDS).optional(),
  rejectedVersion: z.number().int().min(0).optional(),
});
export type TokenGetPayload = z.infer<typeof TokenGetPayloadSchema>;

/** A token.get with its credential's names: as served (subject + payload) or as a tool validates it. */
export const TokenGetRequestSchema = TokenGetPayloadSchema.extend({ tenant, connection });
export type TokenGetRequest = z.infer<typeof TokenGetRequestSchema>;

/**
 * `token.get` validation for the hot path: the subject's two names (the only name checks),
 * then the payload by the same rules as TokenGetPayloadSchema + assertPayloadMatchesSubject,
 * checked by hand (a tenth of the CPU of the schema, which showed in token.get's profile).
 * Anything this check does not accept goes through the schema, so a rejected request gets
 * exactly the schema's `bad_request` message.
 */
export function parseTokenGetRequest(data: unknown, subject: string): TokenGetRequest {
  const request: TokenGetRequest = parseTokenGetSubject(subject);
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    const { tenant, connection, minTtlSeconds, rejectedVersion } = data as Record<string, unknown>;
    if (
      (tenant === undefined || tenant === request.tenant) &&
      (connection === undefined || connection === request.connection) &&
      (minTtlSeconds === undefined ||
        (Number.isSafeInteger(minTtlSeconds) &&
          (minTtlSeconds as number) >= 0 &&
          (minTtlSeconds as number) <= MAX_MIN_TTL_SECONDS)) &&
      (rejectedVersion === undefined || (Number.isSafeInteger(rejectedVersion) && (rejectedVersion as number) >= 0))
    ) {
      if (minTtlSeconds !== undefined) request.minTtlSeconds = minTtlSeconds as number;
      if (rejectedVersion !== undefined) request.rejectedVersion = rejectedVersion as number;
      return request;
    }
  }
  const payload = parseRequest(TokenGetPayloadSchema, data);
  assertPayloadMatchesSubject(payload, request);
  if (payload.minTtlSeconds !== undefined) request.minTtlSeconds = payload.minTtlSeconds;
  if (payload.rejectedVersion !== undefined) request.rejectedVersion = payload.rejectedVersion;
  return request;
}

/** Providers send `expires_in` as a number or a numeric string; registrations may do the same. */
const lifetimeSeconds = z
  .union([z.number(), z.string().regex(/^\d+(\.\d+)?$/)])
  .transform(Number)
  .pipe(
    z
      .number()
      .positive()
      .max(10 * 365 * 86_400),
  );

/**
 * The caller's own non-secret labels of a credential (which customer account, which
 * workspace; `displayName` names the tenant on the connect page), stored and returned as
 * given: bounded and plain, because a person may read them and every describe carries them.
 */
export const CONNECT_METADATA_MAX_KEYS = 32;
export const CONNECT_METADATA_MAX_BYTES = 4_096;
export const METADATA_MAX_KEYS = CONNECT_METADATA_MAX_KEYS;
export const METADATA_MAX_BYTES = CONNECT_METADATA_MAX_BYTES;
const connectMetadata = z
  .record(
    z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'keys must be 1-64 of A-Z a-z 0-9 _ . : -'),
    z.string().max(1_024),
  )
  .refine((m) => Object.keys(m).length <= CONNECT_METADATA_MAX_KEYS, `at most ${CONNECT_METADATA_MAX_KEYS} keys`)
  .refine(
    (m) => new TextEncoder().encode(JSON.stringify(m)).length <= CONNECT_METADATA_MAX_BYTES,
    `at most ${CONNECT_METADATA_MAX_BYTES} bytes as JSON`,
  );

/**
 * Values for the `{name}` placeholders of a provider's URLs (a shop, an instance host). The
 * shape is checked here; whether each value fits its place in the URL (a host label, a path
 * segment) is checked by the refresher against the provider, which knows the placeholders.
 */
export const CONNECTION_CONFIG_MAX_KEYS = 16;
const connectionConfig = z
  .record(
    z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,31}$/, 'keys must be placeholder names (a letter, then A-Z a-z 0-9 _)'),
    z.string().min(1).max(253),
  )
  .refine((m) => Object.keys(m).length <= CONNECTION_CONFIG_MAX_KEYS, `at most ${CONNECTION_CONFIG_MAX_KEYS} keys`);

const registerFields = {
  provider: providerId,
  accessToken: secretString.optional(),
  refreshToken: secretString.optional(),
  expiresIn: lifetimeSeconds.optional(),
  expiresAt: isoTimestamp.optional(),
  /** The refresh token's absolute expiry, when the caller knows it (shown in describe, warned of before). */
  refreshTokenExpiresAt: isoTimestamp.optional(),
  scope: z.string().max(4_096).optional(),
  tokenType: z.string().min(1).max(64).optional(),
  connectionConfig: connectionConfig.optional(),
  metadata: connectMetadata.optional(),
};
const oneLifetime = [
  (r: { expiresIn?: number; expiresAt?: string }) => r.expiresIn === undefined || r.expiresAt === undefined,
  { message: 'give expiresIn or expiresAt, not both' },
] as const;

/**
 * `tokenkeeper.admin.register.<tenant>.<connection>` payload: strict (unknown fields are a
 * `bad_request`); `tenant`/`connection` may be repeated and must then equal the subject's.
 */
export const TokenRegisterPayloadSchema = z
  .strictObject({ tenant: tenant.optional(), connection: connection.optional(), ...registerFields })
  .refine(...oneLifetime);

/** A registration with its credential's names, as a tool validates it before addressing it (tokenctl). */
export const TokenRegisterRequestSchema = z
  .strictObject({ tenant, connection, ...registerFields })
  .refine(...oneLifetime);
export type TokenRegisterRequest = z.infer<typeof TokenRegisterRequestSchema>;

/** Payload of `tokenkeeper.admin.{refresh,revoke,describe}.<tenant>.<connection>`: `{}`, names optional. */
export const CredentialPayloadSchema = z.strictObject({ tenant: tenant.optional(), connection: connection.optional() });

/** How long a connect URL stays usable by default, and at most. */
export const CONNECT_DEFAULT_TTL_SECONDS = 900;
export const CONNECT_MAX_TTL_SECONDS = 3_600;

/**
 * `tokenkeeper.admin.connect.<tenant>.<connection>` payload: strict, as every
 * admin payload. Whether `returnUrl`'s origin is allowed depends on the provider, so the
 * refresher checks that.
 */
export const ConnectPayloadSchema = z.strictObject({
  tenant: tenant.optional(),
  connection: connection.optional(),
  provider: providerId,
  returnUrl: z
    .url({ protocol: /^https?$/ })
    .max(2_048)
    .optional(),
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,200}$/, 'must be an OAuth scope token'))
    .max(50)
    .optional(),
  ttlSeconds: z.number().int().min(1).max(CONNECT_MAX_TTL_SECONDS).optional(),
  metadata: connectMetadata.optional(),
  connectionConfig: connectionConfig.optional(),
});
export type ConnectPayload = z.infer<typeof ConnectPayloadSchema>;
export type ConnectRequest = ConnectPayload & CredentialKey;
export type ConnectReply = Reply<{ url: string; expiresAt: string }>;

/** A credential's names, validated (tokenctl checks its arguments with it). */
export const CredentialKeyRequestSchema = z.strictObject({ tenant, connection });
export type CredentialKeyRequest = z.infer<typeof CredentialKeyRequestSchema>;

/**
 * Payload of `tokenkeeper.admin.list[.<tenant>]`: on the cross-tenant subject `tenant` is a
 * filter, on a tenant's subject it must equal the subject's.
 */
export const TokenListRequestSchema = z.strictObject({
  tenant: tenant.optional(),
  status: z.enum(CREDENTIAL_STATUSES).optional(),
  /** Only credentials whose refresh token's known absolute expiry falls within this many days. */
  expiringWithinDays: z.number().min(0).max(3_650).optional(),
  limit: z.number().int().min(1).max(1_000).optional(),
  cursor: z.string().max(1_024).optional(),
});
export type TokenListRequest = z.infer<typeof TokenListRequestSchema>;

export const AuditQueryRequestSchema = z.strictObject({
  tenant: tenant.optional(),
  connection: connection.optional(),
  type: z.enum(AUDIT_RECORD_TYPES).optional(),
  since: isoTimestamp.optional(),
  limit: z.number().int().min(1).max(1_000).optional(),
  cursor: z.string().max(1_024).optional(),
});
export type AuditQueryRequest = z.infer<typeof AuditQueryRequestSchema>;

/**
 * An admin request on `tokenkeeper.admin.<op>.<tenant>.<connection>`: the subject's names
 * (bad ones are a `bad_request`), the payload by `schema`, and the payload's names, if
 * any, equal to the subject's. The result carries the subject's names.
 */
export function parseCredentialRequest<S extends z.ZodType<object>>(
  schema: S,
  data: unknown,
  subject: string,
): z.output<S> & CredentialKey {
  const { tenant, connection } = parseAdminSubject(subject);
  const payload = parseRequest(schema, data);
  assertPayloadMatchesSubject(payload, { tenant, connection });
  return { ...payload, tenant, connection };
}

/** `tokenkeeper.admin.list[.<tenant>]`: the tenant of the subject, else the payload's filter. */
export function parseListRequest(data: unknown, subject: string): TokenListRequest {
  return scoped(TokenListRequestSchema, data, parseAdminListSubject(subject));
}

/** `audit.query[.<tenant>]`: the tenant of the subject, else the payload's filter. */
export function parseAuditQueryRequest(data: unknown, subject: string): AuditQueryRequest {
  return scoped(AuditQueryRequestSchema, data, parseAuditQuerySubject(subject));
}

function scoped<S extends z.ZodType<{ tenant?: string }>>(
  schema: S,
  data: unknown,
  scope: { tenant?: string },
): z.output<S> {
  const payload = parseRequest(schema, data);
  assertPayloadMatchesSubject(payload, scope);
  return scope.tenant === undefined ? payload : { ...payload, tenant: scope.tenant };
}

/**
 * Validates a decoded request. The error message names fields and rules only, never
 * the rejected value, because a value may be a secret sent to the wrong field.
 */
export function parseRequest<S extends z.ZodType>(schema: S, data: unknown): z.output<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const detail = result.error.issues
    .slice(0, 5)
    .map((issue) => {
      const path = issue.path.join('.');
      const message = issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message;
      return path ? `${path}: ${message}` : message;
    })
    .join('; ');
  throw new ContractError('bad_request', detail.slice(0, 500));
}

/** A token as `token.get` answers it. */
export interface TokenView {
  tenant: string;
  connection: string;
  provider: string;
  accessToken: string;
  tokenType: string;
  /** null when the provider gave no lifetime: such a token is served until replaced. */
  expiresAt: string | null;
  scope?: string;
  version: number;
  /** Non-secret fields of the provider's token responses named by its `tokenFields` (e.g. `instance_url`). */
  extras?: Record<string, string>;
}

/** Credential metadata: never an access token, a refresh token or a client secret. */
export interface CredentialView {
  tenant: string;
  connection: string;
  provider: string;
  status: CredentialStatus;
  tokenType: string;
  scope?: string;
  version: number;
  hasAccessToken: boolean;
  hasRefreshToken: boolean;
  expiresAt: string | null;
  nextRefreshAt: string | null;
  lastRefreshedAt: string | null;
  failures: number;
  lastError: ErrorBody | null;
  /** When the refresh token itself ends (absolute expiry), when known; null otherwise. */
  refreshTokenExpiresAt?: string | null;
  createdAt: string;
  updatedAt: string;
  /** The caller's own labels, as given to register or connect. */
  metadata?: Record<string, string>;
  /** The values of the provider's URL placeholders for this credential. */
  connectionConfig?: Record<string, string>;
}

/** `token.refreshed.*` and `token.registered.*` carry the same payload. */
export interface TokenRefreshedEvent extends TokenView {
  eventId: string;
  refreshedAt: string;
}

export interface TokenFailedEvent {
  eventId: string;
  tenant: string;
  connection: string;
  provider: string;
  code: string;
  message: string;
  attempt: number;
  retryAt?: string;
  status: CredentialStatus;
  version: number;
}

export interface TokenRevokedEvent {
  eventId: string;
  tenant: string;
  connection: string;
  provider: string;
  version: number;
}

/** A credential that was `failing` refreshed again: since when it failed, after how many attempts. */
export interface TokenRecoveredEvent {
  eventId: string;
  tenant: string;
  connection: string;
  provider: string;
  version: number;
  failedSince: string;
  attempts: number;
}

/** The grant itself ends soon (its refresh token's absolute expiry); only a new connect renews it. */
export interface TokenExpiringEvent {
  eventId: string;
  tenant: string;
  connection: string;
  provider: string;
  version: number;
  refreshTokenExpiresAt: string;
}

/** A secret-free audit record. */
export interface AuditRecord {
  /**
   * The record's own id, its JetStream `Nats-Msg-Id` and the audit table's unique key.
   * Never shown on a core `token.*` event, so nobody who sees the change can publish a
   * record under it first. Set by the outbox relay when it publishes; absent
   * only in records written by an older refresher (the audit app then uses `eventId`).
   */
  recordId?: string;
  /** The change's id, as on the core event: for correlation, not for dedupe. */
  eventId: string;
  type: (typeof AUDIT_RECORD_TYPES)[number];
  tenant: string;
  connection: string;
  provider: string;
  version: number;
  outcome?: string;
  code?: string;
  message?: string;
  at: string;
  replica: string;
}

export type OkReply<T extends object> = { ok: true } & T;
export interface ErrorReply {
  ok: false;
  error: ErrorBody;
}
export type Reply<T extends object> = OkReply<T> | ErrorReply;

export type TokenGetReply = Reply<{ token: TokenView }>;
export type CredentialReply = Reply<{ credential: CredentialView }>;
export type TokenListReply = Reply<{ items: CredentialView[]; nextCursor?: string }>;
export type AuditQueryReply = Reply<{ items: AuditRecord[]; nextCursor?: string }>;
