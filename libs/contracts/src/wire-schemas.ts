import { z } from 'zod';
import { AuditRecordSchema } from './audit.js';
import { ERROR_CODES } from './errors.js';
import {
  CREDENTIAL_STATUSES,
  type CredentialView,
  type TokenFailedEvent,
  type TokenRefreshedEvent,
  type TokenRevokedEvent,
  type TokenRecoveredEvent,
  type TokenExpiringEvent,
  type TokenView,
} from './messages.js';
import { NAME_PATTERN } from './names.js';
import { MAX_EXTRA_VALUE_LENGTH } from './token-events.js';

/**
 * Schemas of what the services send: replies and `token.*` events. Readers in this
 * repository check these by hand on their hot paths (token-events.ts); these schemas are
 * the contract's description of the same shapes, for the AsyncAPI document
 * (docs/asyncapi.yaml) that tooling in any language reads, and for tests that hold real
 * messages against them. The type checks at the bottom keep them equal to the types the
 * code uses.
 */

const name = z.string().regex(NAME_PATTERN);
const timestamp = z.iso.datetime({ offset: true }).describe('ISO-8601 UTC');
const version = z
  .number()
  .int()
  .min(0)
  .describe('increases by one with every new access token of the credential, and on revoke');

export const TokenViewSchema = z.object({
  tenant: name,
  connection: name,
  provider: name,
  accessToken: z.string().min(1).max(16_384).describe('the bearer token: a secret'),
  tokenType: z.string().min(1).max(64),
  expiresAt: timestamp.nullable().describe('null when the provider gave no lifetime: served until replaced'),
  scope: z.string().optional(),
  version,
  extras: z
    .record(z.string(), z.string().max(MAX_EXTRA_VALUE_LENGTH))
    .optional()
    .describe("non-secret fields of the provider's token responses named by its tokenFields (e.g. instance_url)"),
});

export const ErrorBodySchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string().describe('public text: names and rules, never a secret'),
  retryAfterSeconds: z.number().int().min(0).optional().describe('with rate_limited: when asking again can succeed'),
});

export const ErrorReplySchema = z.object({ ok: z.literal(false), error: ErrorBodySchema });

const okReply = <T extends z.ZodRawShape>(shape: T) => z.object({ ok: z.literal(true), ...shape });

export const CredentialViewSchema = z.object({
  tenant: name,
  connection: name,
  provider: name,
  status: z.enum(CREDENTIAL_STATUSES),
  tokenType: z.string(),
  scope: z.string().optional(),
  version,
  hasAccessToken: z.boolean(),
  hasRefreshToken: z.boolean(),
  expiresAt: timestamp.nullable(),
  nextRefreshAt: timestamp.nullable(),
  lastRefreshedAt: timestamp.nullable(),
  failures: z.number().int().min(0),
  lastError: ErrorBodySchema.nullable(),
  refreshTokenExpiresAt: timestamp.nullable().optional(),
  createdAt: timestamp,
  updatedAt: timestamp,
  metadata: z.record(z.string(), z.string()).optional().describe("the caller's own labels, as given"),
  connectionConfig: z
    .record(z.string(), z.string())
    .optional()
    .describe("the values of the provider's URL placeholders for this credential"),
});

export const TokenGetReplySchema = z.union([okReply({ token: TokenViewSchema }), ErrorReplySchema]);
export const CredentialReplySchema = z.union([okReply({ credential: CredentialViewSchema }), ErrorReplySchema]);
export const RevokeReplySchema = z.union([okReply({ providerRevoked: z.boolean() }), ErrorReplySchema]);
export const ConnectReplySchema = z.union([okReply({ url: z.url(), expiresAt: timestamp }), ErrorReplySchema]);
const cursor = z.string().optional().describe('pass as `cursor` to get the next page; absent on the last');
export const CredentialListReplySchema = z.union([
  okReply({ items: z.array(CredentialViewSchema), nextCursor: cursor }),
  ErrorReplySchema,
]);
export const AuditQueryReplySchema = z.union([
  okReply({ items: z.array(AuditRecordSchema), nextCursor: cursor }),
  ErrorReplySchema,
]);

export const TokenRefreshedEventSchema = TokenViewSchema.extend({ eventId: z.uuid(), refreshedAt: timestamp });

export const TokenFailedEventSchema = z.object({
  eventId: z.uuid(),
  tenant: name,
  connection: name,
  provider: name,
  code: z.string(),
  message: z.string(),
  attempt: z.number().int().min(0),
  retryAt: timestamp.optional(),
  status: z.enum(CREDENTIAL_STATUSES),
  version,
});

export const TokenRevokedEventSchema = z.object({
  eventId: z.uuid(),
  tenant: name,
  connection: name,
  provider: name,
  version,
});

export const TokenRecoveredEventSchema = TokenRevokedEventSchema.extend({
  failedSince: timestamp,
  attempts: z.number().int().min(0),
});

export const TokenExpiringEventSchema = TokenRevokedEventSchema.extend({ refreshTokenExpiresAt: timestamp });

// Compile-time: each schema's output is exactly the type the code uses.
// (The function form also tells an optional field from a missing one.)
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const agree = <T extends true>(): T => true as T;
agree<Same<z.output<typeof TokenViewSchema>, TokenView>>();
agree<Same<z.output<typeof CredentialViewSchema>, CredentialView>>();
agree<Same<z.output<typeof TokenRefreshedEventSchema>, TokenRefreshedEvent>>();
agree<Same<z.output<typeof TokenFailedEventSchema>, TokenFailedEvent>>();
agree<Same<z.output<typeof TokenRevokedEventSchema>, TokenRevokedEvent>>();
agree<Same<z.output<typeof TokenRecoveredEventSchema>, TokenRecoveredEvent>>();
agree<Same<z.output<typeof TokenExpiringEventSchema>, TokenExpiringEvent>>();
