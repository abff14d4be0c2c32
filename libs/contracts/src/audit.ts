import { z } from 'zod';
import type { AuditRecord } from './messages.js';
import { NAME_PATTERN } from './names.js';
import { AUDIT_RECORD_TYPES, AUDIT_SUBJECT_PREFIX, type AuditRecordType } from './subjects.js';

/** The queue group every audit replica joins for `audit.query`. */
export const AUDIT_QUEUE_GROUP = 'audit';

/** Subject filter of the `TOKEN_AUDIT` stream and of its consumers. */
export const AUDIT_SUBJECT_FILTER = `${AUDIT_SUBJECT_PREFIX}.>`;

/**
 * The only fields an audit record may carry. Anything else found in a record
 * is dropped before it is published or stored: a secret cannot travel in a field that
 * nobody reads.
 */
export const AUDIT_RECORD_FIELDS = [
  'recordId',
  'eventId',
  'type',
  'tenant',
  'connection',
  'provider',
  'version',
  'outcome',
  'code',
  'message',
  'at',
  'replica',
] as const satisfies readonly (keyof AuditRecord)[];

/** A copy of `value` with the allow-listed fields only (values unchecked). */
export function pickAuditFields(value: Record<string, unknown>): Record<string, unknown> {
  const picked: Record<string, unknown> = {};
  for (const field of AUDIT_RECORD_FIELDS) {
    if (value[field] !== undefined && value[field] !== null) picked[field] = value[field];
  }
  return picked;
}

const name = z.string().regex(NAME_PATTERN);
/** Codes, outcomes and replica ids are identifiers, never free text. */
const label = z.string().regex(/^[A-Za-z0-9_.:@/-]{1,200}$/);

/**
 * Validates a record received from the stream. Unknown fields are stripped (never an
 * error: a newer refresher may add a field), wrong types and bad names are rejected.
 */
export const AuditRecordSchema = z.object({
  recordId: z.uuid().optional(),
  eventId: z.uuid(),
  type: z.enum(AUDIT_RECORD_TYPES),
  tenant: name,
  connection: name,
  provider: name,
  version: z.number().int().min(0),
  outcome: label.optional(),
  code: label.optional(),
  message: z.string().max(2_000).optional(),
  at: z.iso.datetime({ offset: true }),
  replica: label,
});

/** Splits `audit.token.<type>.<tenant>.<connection>`, or null when the subject is not one. */
export function parseAuditSubject(
  subject: string,
): { type: AuditRecordType; tenant: string; connection: string } | null {
  const parts = subject.split('.');
  if (parts.length !== 5 || `${parts[0]}.${parts[1]}` !== AUDIT_SUBJECT_PREFIX) return null;
  const type = parts[2] as AuditRecordType;
  if (!AUDIT_RECORD_TYPES.includes(type)) return null;
  return { type, tenant: parts[3], connection: parts[4] };
}
