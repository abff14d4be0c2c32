import { randomUUID } from 'node:crypto';
import type { AuditRecord, AuditRecordType, CredentialKey } from '@tokenkeeper/contracts';

/** An audit record on its way into the outbox; the statement that writes it adds `version`. */
export interface PendingAuditRecord {
  event_id: string;
  type: AuditRecordType;
  payload: Omit<AuditRecord, 'version'>;
}

export interface AuditDetails {
  outcome?: string;
  code?: string;
  /** Already safe: built from codes and names, never from a token or a raw provider body. */
  message?: string;
}

/**
 * Builds the secret-free record of one lifecycle change. Its fields are listed one by
 * one, never spread from a credential, so a secret cannot slip in through a new field.
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
    at: new Date().toISOString(),
    replica,
  };
  if (details.outcome !== undefined) payload.outcome = details.outcome;
  if (details.code !== undefined) payload.code = details.code;
  if (details.message !== undefined) payload.message = details.message.slice(0, 300);
  return { event_id: eventId, type, payload };
}
