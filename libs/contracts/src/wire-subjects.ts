import { ContractError } from './errors.js';
import { isValidName, NAME_PATTERN, type CredentialKey } from './names.js';

/**
 * Subjects of the wire contract that name the credential, so NATS permissions can decide who
 * may touch which tenant. Builders refuse bad names (nothing unsafe is
 * ever published); parsers take what a server received on one of the patterns
 * below and answer `bad_request` for a token that breaks the name rule.
 */

export const TOKEN_GET_PREFIX = 'token.get';
export const ADMIN_PREFIX = 'tokenkeeper.admin';
export const AUDIT_QUERY_PREFIX = 'audit.query';

/** Control-plane operations addressed to one credential: `tokenkeeper.admin.<op>.<tenant>.<connection>`. */
export const ADMIN_CREDENTIAL_OPERATIONS = ['register', 'refresh', 'revoke', 'describe', 'connect'] as const;
export type AdminCredentialOperation = (typeof ADMIN_CREDENTIAL_OPERATIONS)[number];

/** What a server subscribes to (in queue group `refresher` for the refresher's). */
export const WireSubscription = {
  tokenGet: `${TOKEN_GET_PREFIX}.*.*`,
  admin: (operation: AdminCredentialOperation) => `${ADMIN_PREFIX}.${operation}.*.*`,
  /** Across tenants; the payload may name a `tenant`. */
  adminList: `${ADMIN_PREFIX}.list`,
  adminListOfTenant: `${ADMIN_PREFIX}.list.*`,
  auditQuery: AUDIT_QUERY_PREFIX,
  auditQueryOfTenant: `${AUDIT_QUERY_PREFIX}.*`,
} as const;

function nameToken(value: string, what: 'tenant' | 'connection'): string {
  if (!isValidName(value)) throw new ContractError('bad_request', `${what} must match ${NAME_PATTERN.source}`);
  return value;
}

export function tokenGetSubject(tenant: string, connection: string): string {
  return `${TOKEN_GET_PREFIX}.${nameToken(tenant, 'tenant')}.${nameToken(connection, 'connection')}`;
}

export function adminSubject(operation: AdminCredentialOperation, tenant: string, connection: string): string {
  if (!ADMIN_CREDENTIAL_OPERATIONS.includes(operation))
    throw new ContractError('bad_request', 'unknown admin operation');
  return `${ADMIN_PREFIX}.${operation}.${nameToken(tenant, 'tenant')}.${nameToken(connection, 'connection')}`;
}

/** `tokenkeeper.admin.list.<tenant>`, or the cross-tenant `tokenkeeper.admin.list` without one. */
export function adminListSubject(tenant?: string): string {
  return tenant === undefined ? WireSubscription.adminList : `${ADMIN_PREFIX}.list.${nameToken(tenant, 'tenant')}`;
}

/** `audit.query.<tenant>`, or the cross-tenant `audit.query` without one. */
export function auditQuerySubject(tenant?: string): string {
  return tenant === undefined ? AUDIT_QUERY_PREFIX : `${AUDIT_QUERY_PREFIX}.${nameToken(tenant, 'tenant')}`;
}

const badSubject = () =>
  new ContractError('bad_request', 'subject does not name a credential as <tenant>.<connection>');

/** Splits `<prefix>.<tenant>.<connection>` after a known prefix of `prefixTokens` tokens. */
function credentialAfter(subject: string, prefixTokens: number): CredentialKey {
  const parts = subject.split('.');
  if (parts.length !== prefixTokens + 2) throw badSubject();
  return {
    tenant: nameToken(parts[prefixTokens], 'tenant'),
    connection: nameToken(parts[prefixTokens + 1], 'connection'),
  };
}

const TOKEN_GET_START = TOKEN_GET_PREFIX.length + 1;

/**
 * `token.get.<tenant>.<connection>` → its credential. On the hot path, so by index rather
 * than split: the two names are the only strings it makes.
 */
export function parseTokenGetSubject(subject: string): CredentialKey {
  if (!subject.startsWith(`${TOKEN_GET_PREFIX}.`)) throw badSubject();
  const dot = subject.indexOf('.', TOKEN_GET_START);
  if (dot < 0 || subject.indexOf('.', dot + 1) >= 0) throw badSubject();
  return {
    tenant: nameToken(subject.slice(TOKEN_GET_START, dot), 'tenant'),
    connection: nameToken(subject.slice(dot + 1), 'connection'),
  };
}

/** `tokenkeeper.admin.<op>.<tenant>.<connection>` → operation and credential. */
export function parseAdminSubject(subject: string): CredentialKey & { operation: AdminCredentialOperation } {
  if (!subject.startsWith(`${ADMIN_PREFIX}.`)) throw badSubject();
  const operation = subject.split('.', 3)[2] as AdminCredentialOperation;
  if (!ADMIN_CREDENTIAL_OPERATIONS.includes(operation))
    throw new ContractError('bad_request', 'unknown admin operation');
  return { operation, ...credentialAfter(subject, 3) };
}

/** Tenant scope of a subject that may or may not carry one (`…list[.<tenant>]`, `audit.query[.<tenant>]`). */
function tenantScope(subject: string, prefix: string): { tenant?: string } {
  if (subject === prefix) return {};
  if (!subject.startsWith(`${prefix}.`)) throw new ContractError('bad_request', `subject is not ${prefix}[.<tenant>]`);
  const rest = subject.slice(prefix.length + 1);
  if (rest.includes('.')) throw new ContractError('bad_request', `subject is not ${prefix}[.<tenant>]`);
  return { tenant: nameToken(rest, 'tenant') };
}

/** `tokenkeeper.admin.list` → `{}`; `tokenkeeper.admin.list.<tenant>` → `{tenant}`. */
export function parseAdminListSubject(subject: string): { tenant?: string } {
  return tenantScope(subject, WireSubscription.adminList);
}

/** `audit.query` → `{}`; `audit.query.<tenant>` → `{tenant}`. */
export function parseAuditQuerySubject(subject: string): { tenant?: string } {
  return tenantScope(subject, AUDIT_QUERY_PREFIX);
}

/**
 * The wire contract: a payload that also names `tenant` or `connection` must name the subject's.
 * Only the names the subject fixes are checked: on the cross-tenant `…list` a payload
 * `tenant` is a filter, not a contradiction. A present but non-string name can never
 * equal the subject's, so it is refused as well.
 */
export function assertPayloadMatchesSubject(payload: unknown, scope: { tenant?: string; connection?: string }): void {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return;
  const named = payload as { tenant?: unknown; connection?: unknown };
  for (const key of ['tenant', 'connection'] as const) {
    const fixed = scope[key];
    if (fixed === undefined || named[key] === undefined) continue;
    if (named[key] !== fixed) throw new ContractError('bad_request', `payload ${key} differs from the subject's`);
  }
}
