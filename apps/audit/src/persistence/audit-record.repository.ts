import { Injectable } from '@nestjs/common';
import { type AuditRecord, type AuditRecordType, ContractError } from '@tokenkeeper/contracts';
import { DataSource } from 'typeorm';

export interface AuditQuery {
  tenant?: string;
  connection?: string;
  type?: AuditRecordType;
  since?: string;
  limit: number;
  cursor?: string;
}

interface AuditRow {
  id: string;
  record_id: string;
  event_id: string;
  tenant: string;
  connection: string;
  provider: string;
  type: AuditRecordType;
  version: number;
  outcome: string | null;
  code: string | null;
  message: string | null;
  at: Date;
  replica: string;
}

/** Keyset position: the (at, id) of the last record of a page. */
interface Position {
  at: string;
  id: string;
}

function encodeCursor(row: AuditRow): string {
  return Buffer.from(`${row.at.toISOString()}|${row.id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): Position {
  const [at, id, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (rest.length > 0 || !at || !id || !/^\d{1,19}$/.test(id) || Number.isNaN(Date.parse(at))) {
    throw new ContractError('bad_request', 'cursor: not a cursor from a previous audit.query reply');
  }
  return { at, id };
}

/** A record that could not be stored: where it came from, why, and its safe fields as text. */
export interface DeadLetter {
  streamSeq: number;
  subject: string | null;
  reason: string;
  eventId?: string;
  type?: string;
  tenant?: string;
  connection?: string;
  provider?: string;
  version?: string;
  at?: string;
  replica?: string;
  outcome?: string;
  code?: string;
}

/** SQL of the audit table: idempotent batch inserts and newest-first keyset pages. */
@Injectable()
export class AuditRecordRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * Deletes at most `limit` of the oldest records with `at` before the cutoff, in one short
   * statement (the (at, id) index finds them; only those rows are locked), and returns how
   * many went. Callers repeat it until it returns less than the limit.
   */
  async deleteOlderThan(cutoff: Date, limit: number): Promise<number> {
    const [, affected]: [unknown, number] = await this.db.query(
      `DELETE FROM audit_records WHERE id IN (
         SELECT id FROM audit_records WHERE at < $1 ORDER BY at, id LIMIT $2
       )`,
      [cutoff, limit],
    );
    return affected;
  }

  /**
   * Stores the records in one statement; a record whose record id is already stored
   * (a redelivery, or a republish after a relay crash) is skipped. Returns how many
   * rows were new.
   */
  async insertMany(records: AuditRecord[]): Promise<number> {
    if (records.length === 0) return 0;
    const column = <K extends keyof AuditRecord>(key: K) => records.map((r) => r[key] ?? null);
    const inserted: unknown[] = await this.db.query(
      `INSERT INTO audit_records (event_id, tenant, connection, provider, type, version, outcome, code, message, at, replica, record_id)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[],
                            $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], $12::uuid[])
       ON CONFLICT (record_id) DO NOTHING
       RETURNING 1`,
      [
        column('eventId'),
        column('tenant'),
        column('connection'),
        column('provider'),
        column('type'),
        column('version'),
        column('outcome'),
        column('code'),
        column('message'),
        column('at'),
        column('replica'),
        records.map((r) => r.recordId ?? r.eventId),
      ],
    );
    return inserted.length;
  }

  /** Stores dead letters in one statement; one already stored (same event id, a redelivery) is skipped. */
  async insertDeadLetters(letters: DeadLetter[]): Promise<number> {
    if (letters.length === 0) return 0;
    const column = <K extends keyof DeadLetter>(key: K) => letters.map((l) => l[key] ?? null);
    const inserted: unknown[] = await this.db.query(
      `INSERT INTO audit_dead_letters (stream_seq, subject, reason, event_id, type, tenant, connection, provider, version, at, replica, outcome, code)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[],
                            $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
       ON CONFLICT (event_id) WHERE event_id IS NOT NULL DO NOTHING
       RETURNING 1`,
      [
        column('streamSeq'),
        column('subject'),
        column('reason'),
        column('eventId'),
        column('type'),
        column('tenant'),
        column('connection'),
        column('provider'),
        column('version'),
        column('at'),
        column('replica'),
        column('outcome'),
        column('code'),
      ],
    );
    return inserted.length;
  }

  async countDeadLetters(): Promise<number> {
    const rows: { n: string }[] = await this.db.query(`SELECT count(*) AS n FROM audit_dead_letters`);
    return Number(rows[0].n);
  }

  /** Newest first; `nextCursor` when there may be more. */
  async query(q: AuditQuery): Promise<{ items: AuditRecord[]; nextCursor?: string }> {
    const where: string[] = [];
    const params: unknown[] = [];
    const bind = (value: unknown) => {
      params.push(value);
      return `$${params.length}`;
    };
    if (q.tenant !== undefined) where.push(`tenant = ${bind(q.tenant)}`);
    if (q.connection !== undefined) where.push(`connection = ${bind(q.connection)}`);
    if (q.type !== undefined) where.push(`type = ${bind(q.type)}`);
    if (q.since !== undefined) where.push(`at >= ${bind(q.since)}::timestamptz`);
    if (q.cursor !== undefined) {
      const after = decodeCursor(q.cursor);
      where.push(`(at, id) < (${bind(after.at)}::timestamptz, ${bind(after.id)}::bigint)`);
    }
    const rows: AuditRow[] = await this.db.query(
      `SELECT id, record_id, event_id, tenant, connection, provider, type, version, outcome, code, message, at, replica
       FROM audit_records ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY at DESC, id DESC
       LIMIT ${bind(q.limit + 1)}`,
      params,
    );
    const page = rows.slice(0, q.limit);
    const items = page.map(toRecord);
    return rows.length > q.limit ? { items, nextCursor: encodeCursor(page[page.length - 1]) } : { items };
  }

  async count(): Promise<number> {
    const rows: { n: string }[] = await this.db.query(`SELECT count(*) AS n FROM audit_records`);
    return Number(rows[0].n);
  }
}

function toRecord(row: AuditRow): AuditRecord {
  const record: AuditRecord = {
    recordId: row.record_id,
    eventId: row.event_id,
    type: row.type,
    tenant: row.tenant,
    connection: row.connection,
    provider: row.provider,
    version: row.version,
    at: row.at.toISOString(),
    replica: row.replica,
  };
  if (row.outcome !== null) record.outcome = row.outcome;
  if (row.code !== null) record.code = row.code;
  if (row.message !== null) record.message = row.message;
  return record;
}
