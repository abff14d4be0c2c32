import { assertSubjectToken } from './names-guard.js';

/** The queue group every refresher replica joins for request-reply subjects. */
export const REFRESHER_QUEUE_GROUP = 'refresher';

/** Core NATS lifecycle events: `token.<kind>.<tenant>.<connection>`. */
export const TOKEN_EVENT_KINDS = ['refreshed', 'registered', 'failed', 'revoked', 'recovered', 'expiring'] as const;
export type TokenEventKind = (typeof TOKEN_EVENT_KINDS)[number];

export function tokenEventSubject(kind: TokenEventKind, tenant: string, connection: string): string {
  assertSubjectToken(tenant);
  assertSubjectToken(connection);
  return `token.${kind}.${tenant}.${connection}`;
}

/**
 * Subscription subject for events of one kind; `tenant`/`connection` may be `*`
 * (and `connection` may be `>` to take every connection of a tenant).
 */
export function tokenEventFilter(kind: TokenEventKind | '*', tenant = '*', connection = '*'): string {
  return `token.${kind}.${tenant}.${connection}`;
}

/** Splits a lifecycle event subject back into its parts, or null when it is not one. */
export function parseTokenEventSubject(
  subject: string,
): { kind: TokenEventKind; tenant: string; connection: string } | null {
  const parts = subject.split('.');
  if (parts.length !== 4 || parts[0] !== 'token') return null;
  const kind = parts[1] as TokenEventKind;
  if (!TOKEN_EVENT_KINDS.includes(kind)) return null;
  return { kind, tenant: parts[2], connection: parts[3] };
}

/** JetStream stream that holds the secret-free audit trail. */
export const AUDIT_STREAM = 'TOKEN_AUDIT';
export const AUDIT_SUBJECT_PREFIX = 'audit.token';

export const AUDIT_RECORD_TYPES = [
  'registered',
  'refresh_started',
  'refreshed',
  'failed',
  'reauth_required',
  'revoked',
  // The connect flow: a session started, a grant obtained, or a flow that ended without one.
  'connect_started',
  'connected',
  'connect_failed',
  // A failing credential refreshed again; a grant whose refresh token ends soon.
  'recovered',
  'expiring',
  // Webhooks: a delivery an endpoint accepted, or one given up after the retry budget.
  'webhook_delivered',
  'webhook_parked',
] as const;
export type AuditRecordType = (typeof AUDIT_RECORD_TYPES)[number];

export function auditSubject(type: AuditRecordType, tenant: string, connection: string): string {
  assertSubjectToken(tenant);
  assertSubjectToken(connection);
  return `${AUDIT_SUBJECT_PREFIX}.${type}.${tenant}.${connection}`;
}
