import { randomUUID } from 'node:crypto';
import {
  AUDIT_SUBJECT_PREFIX,
  auditSubject,
  type AuditRecord,
  type AuditRecordType,
  type CredentialKey,
} from '@tokenkeeper/contracts';

/** An audit record on its way into the outbox; the statement that writes it adds `version`. */
export interface PendingAuditRecord {
  event_id: string;
  type: AuditRecordType;
  subject: string;
  payload: Omit<AuditRecord, 'version'>;
}

/**
 * The record of a claim, whose rows the statement has yet to find: everything but the
 * row's identity, which the statement stamps from each row it leased (eventId, tenant,
 * connection, provider, version), as it stamps `version` on every record.
 */
export interface ClaimAuditTemplate {
  type: AuditRecordType;
  /** The subject up to the tenant: `audit.token.<type>.` */
  subject_prefix: string;
  payload: Omit<AuditRecord, 'eventId' | 'version' | 'tenant' | 'connection' | 'provider'>;
}

export interface AuditDetails {
  outcome?: string;
  code?: string;
  /** Already safe: built from codes and names, never from a token or a raw provider body. */
  message?: string;
}

/**
 * Builds the secret-free record of one lifecycle change: the only place a record is
 * made. Its fields are listed one by one, never spread from a credential, so a secret
 * cannot slip in through a new field.
 */
export function auditRecord(
  type: AuditRecordType,
  credential: CredentialKey & { provider: string },
  replica: string,
  details: AuditDetails = {},
  eventId: string = randomUUID(),
): PendingAuditRecord {
  const payload: Omit<AuditRecord, 'version'> = {
    eventId,
    type,
    tenant: credential.tenant,
    connection: credential.connection,
    provider: credential.provider,
    ...recordFields(replica, details),
  };
  return { event_id: eventId, type, subject: auditSubject(type, credential.tenant, credential.connection), payload };
}

/** The record of each row a claim leases; see ClaimAuditTemplate. */
export function claimAuditTemplate(
  type: AuditRecordType,
  replica: string,
  details: AuditDetails = {},
): ClaimAuditTemplate {
  return {
    type,
    subject_prefix: `${AUDIT_SUBJECT_PREFIX}.${type}.`,
    payload: { type, ...recordFields(replica, details) },
  };
}

function recordFields(
  replica: string,
  details: AuditDetails,
): Pick<AuditRecord, 'at' | 'replica' | 'outcome' | 'code' | 'message'> {
  const fields: Pick<AuditRecord, 'at' | 'replica' | 'outcome' | 'code' | 'message'> = {
    at: new Date().toISOString(),
    replica,
  };
  if (details.outcome !== undefined) fields.outcome = details.outcome;
  if (details.code !== undefined) fields.code = details.code;
  if (details.message !== undefined) fields.message = details.message.slice(0, 300);
  return fields;
}
