import { randomUUID } from 'node:crypto';
import { AUDIT_SUBJECT_PREFIX, auditSubject, type AuditRecord, type AuditRecordType, type CredentialKey } from '@tokenkeeper/contracts';

/** An audit record on its way into the outbox; the statement that writes it adds `version`. */
export interface PendingAuditRecord {
  event_id: string;
  type: AuditRecordType;
  subject: string;
  payload: Omit<AuditRecord, 'version'>;
}

/**
 * A record for a row the statement has yet to find (a claim): everything but the row's
 * identity, which the statement stamps from the row it changed (tenant, connection,
 * provider, version), as it stamps `version` on every record. `n` pairs it with one row.
 */
export interface RowAuditRecord {
  n: number;
  event_id: string;
  type: AuditRecordType;
  /** The subject up to the tenant: `audit.token.<type>.` */
  subject_prefix: string;
  payload: Omit<AuditRecord, 'version' | 'tenant' | 'connection' | 'provider'>;
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

/** `count` records of `type`, one for each row a claim may change (see RowAuditRecord). */
export function rowAuditRecords(type: AuditRecordType, replica: string, count: number, details: AuditDetails = {}): RowAuditRecord[] {
  const fields = recordFields(replica, details);
  const records: RowAuditRecord[] = [];
  for (let n = 1; n <= count; n++) {
    const eventId = randomUUID();
    records.push({ n, event_id: eventId, type, subject_prefix: `${AUDIT_SUBJECT_PREFIX}.${type}.`, payload: { eventId, type, ...fields } });
  }
  return records;
}

function recordFields(replica: string, details: AuditDetails): Pick<AuditRecord, 'at' | 'replica' | 'outcome' | 'code' | 'message'> {
  const fields: Pick<AuditRecord, 'at' | 'replica' | 'outcome' | 'code' | 'message'> = { at: new Date().toISOString(), replica };
  if (details.outcome !== undefined) fields.outcome = details.outcome;
  if (details.code !== undefined) fields.code = details.code;
  if (details.message !== undefined) fields.message = details.message.slice(0, 300);
  return fields;
}
