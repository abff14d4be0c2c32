import type { AuditRecord } from '@tokenkeeper/contracts';

/** `audit_records.version` is a PostgreSQL integer. */
export const VERSION_MAX = 2_147_483_647;
/** Longest text stored in a column; names and labels are far shorter by their schema. */
export const TEXT_MAX = 2_000;
/** PostgreSQL has no year 0 (ISO 0000 is 1 BC): the earliest instant it takes in ISO form. */
const EARLIEST_AT = Date.parse('0001-01-01T00:00:00.000Z');
/** timestamptz ends in 294276 AD; a JS Date stops well before. */
const LATEST_AT = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * Why a record that passed the schema still cannot go into `audit_records`, or undefined.
 * The schema is the wire contract (any non-negative integer version, any ISO timestamp);
 * this is the table's: a record outside it is dead-lettered instead of failing the batch
 * forever. Names the field and the rule, never the value.
 */
export function columnProblem(record: AuditRecord): string | undefined {
  const problems: string[] = [];
  if (!Number.isSafeInteger(record.version) || record.version < 0 || record.version > VERSION_MAX) {
    problems.push(`version: outside the integer column (0..${VERSION_MAX})`);
  }
  const at = Date.parse(record.at);
  if (Number.isNaN(at) || at < EARLIEST_AT || at > LATEST_AT)
    problems.push('at: outside the timestamps PostgreSQL accepts (year 1..9999)');
  for (const field of [
    'eventId',
    'type',
    'tenant',
    'connection',
    'provider',
    'replica',
    'outcome',
    'code',
    'message',
  ] as const) {
    const value = record[field];
    if (value === undefined) continue;
    // PostgreSQL text cannot hold NUL.
    if (value.length > TEXT_MAX || value.includes('\u0000'))
      problems.push(`${field}: longer than ${TEXT_MAX} characters or holds NUL`);
  }
  return problems.length ? problems.join('; ') : undefined;
}
