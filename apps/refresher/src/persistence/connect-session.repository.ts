import { Injectable } from '@nestjs/common';
import { TokenCipher } from '../crypto/token-cipher.js';
import type { Secret } from '@tokenkeeper/common';
import { DataSource } from 'typeorm';
import type { PendingAuditRecord } from './audit-record.js';

/** A connect session as the flow sees it; the hashes and the ciphertext stay in here. */
export interface ConnectSession {
  tenant: string;
  connection: string;
  provider: string;
  scopes: string[];
  returnUrl: string | null;
  status: 'created' | 'redirected' | 'completing' | 'connected' | 'failed';
  expiresAt: Date;
}

export interface NewConnectSession {
  sessionHash: Buffer;
  tenant: string;
  connection: string;
  provider: string;
  scopes: string[];
  returnUrl: string | null;
  createdAt: Date;
  expiresAt: Date;
}

interface SessionRow {
  tenant: string;
  connection: string;
  provider: string;
  scopes: string[];
  return_url: string | null;
  status: ConnectSession['status'];
  expires_at: Date;
  session_hash: Buffer;
  verifier_enc: Buffer | null;
}

/**
 * Inserts one audit record about the session's credential, stamped with the credential's
 * version if it exists (0 before the first grant): the session change and its record commit
 * together, as every lifecycle change does (SPEC §7).
 */
const SESSION_AUDIT_CTE = (param: number) => `
  audit AS (
    INSERT INTO outbox (event_id, tenant, connection, type, subject, payload)
    SELECT r.event_id, s.tenant, s.connection, r.type, r.subject,
           r.payload || jsonb_build_object('version',
             COALESCE((SELECT version FROM credentials c WHERE c.tenant = s.tenant AND c.connection = s.connection), 0))
    FROM s CROSS JOIN jsonb_to_record($${param}::jsonb) AS r(event_id uuid, type text, subject text, payload jsonb)
    RETURNING event_id
  )`;

/**
 * The connect_sessions table. Every step is one conditional UPDATE, so a session is used
 * once whichever replica serves it, and a step that loses a race finds nothing.
 */
@Injectable()
export class ConnectSessionRepository {
  constructor(
    private readonly db: DataSource,
    private readonly cipher: TokenCipher,
  ) {}

  async create(session: NewConnectSession, audit: PendingAuditRecord): Promise<void> {
    await this.db.query(
      `WITH s AS (
         INSERT INTO connect_sessions (session_hash, tenant, connection, provider, scopes, return_url, status, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'created', $7, $8)
         RETURNING tenant, connection
       ), ${SESSION_AUDIT_CTE(9)}
       SELECT 1`,
      [
        session.sessionHash,
        session.tenant,
        session.connection,
        session.provider,
        session.scopes,
        session.returnUrl,
        session.createdAt,
        session.expiresAt,
        JSON.stringify(audit),
      ],
    );
  }

  /** The browser opened the URL: binds a state and a verifier to the session, once. Null: unknown, used or expired. */
  async beginRedirect(
    sessionHash: Buffer,
    stateHash: Buffer,
    verifier: Secret,
    now: Date,
  ): Promise<ConnectSession | null> {
    // An UPDATE … RETURNING answers [rows, count] through TypeORM's postgres driver.
    const [rows]: [SessionRow[], number] = await this.db.query(
      `UPDATE connect_sessions SET status = 'redirected', state_hash = $2, verifier_enc = $3, redirected_at = $4
       WHERE session_hash = $1 AND status = 'created' AND expires_at > $4
       RETURNING *`,
      [sessionHash, stateHash, this.cipher.encrypt(verifier, verifierContext(sessionHash)), now],
    );
    return rows.length ? toSession(rows[0]) : null;
  }

  /** What a refused session hash names, for the page: null when unknown. */
  async find(sessionHash: Buffer): Promise<ConnectSession | null> {
    const rows: SessionRow[] = await this.db.query(`SELECT * FROM connect_sessions WHERE session_hash = $1`, [
      sessionHash,
    ]);
    return rows.length ? toSession(rows[0]) : null;
  }

  /**
   * The callback took the session named by `state`: from here on nobody else can. Returns
   * the session with its verifier and its hash (the key of the next step); null when the
   * state is unknown, was used, or its session expired.
   */
  async takeForCallback(
    stateHash: Buffer,
    now: Date,
  ): Promise<{ session: ConnectSession; sessionHash: Buffer; verifier: Secret } | null> {
    const [rows]: [SessionRow[], number] = await this.db.query(
      `UPDATE connect_sessions SET status = 'completing'
       WHERE state_hash = $1 AND status = 'redirected' AND expires_at > $2
       RETURNING *`,
      [stateHash, now],
    );
    if (!rows.length) return null;
    const row = rows[0];
    return {
      session: toSession(row),
      sessionHash: row.session_hash,
      verifier: this.cipher.decrypt(row.verifier_enc!, verifierContext(row.session_hash)),
    };
  }

  /** The session named by a state it no longer accepts (used or expired), for the page and the audit record. */
  async findByState(stateHash: Buffer): Promise<ConnectSession | null> {
    const rows: SessionRow[] = await this.db.query(`SELECT * FROM connect_sessions WHERE state_hash = $1`, [stateHash]);
    return rows.length ? toSession(rows[0]) : null;
  }

  /** Ends the session; the verifier is forgotten. A failure carries its audit record. */
  async finish(
    sessionHash: Buffer,
    status: 'connected' | 'failed',
    now: Date,
    audit?: PendingAuditRecord,
  ): Promise<void> {
    await this.db.query(
      `WITH s AS (
         UPDATE connect_sessions SET status = $2, verifier_enc = NULL, finished_at = $3
         WHERE session_hash = $1 RETURNING tenant, connection
       )${audit ? `, ${SESSION_AUDIT_CTE(4)}` : ''}
       SELECT 1`,
      audit ? [sessionHash, status, now, JSON.stringify(audit)] : [sessionHash, status, now],
    );
  }

  /** Deletes up to `limit` sessions that expired before `before`, whatever their state; returns how many. */
  async purgeExpiredBefore(before: Date, limit: number): Promise<number> {
    const [, count] = await this.db.query(
      `DELETE FROM connect_sessions WHERE session_hash IN (
         SELECT session_hash FROM connect_sessions WHERE expires_at < $1 ORDER BY expires_at LIMIT $2
       )`,
      [before, limit],
    );
    return Number(count ?? 0);
  }

  /** Ends a session whose callback came too late, with its record, once (a reload finds it failed). */
  async expireByState(stateHash: Buffer, now: Date, audit: PendingAuditRecord): Promise<void> {
    await this.db.query(
      `WITH s AS (
         UPDATE connect_sessions SET status = 'failed', verifier_enc = NULL, finished_at = $2
         WHERE state_hash = $1 AND status = 'redirected' AND expires_at <= $2 RETURNING tenant, connection
       ), ${SESSION_AUDIT_CTE(3)}
       SELECT 1`,
      [stateHash, now, JSON.stringify(audit)],
    );
  }
}

export function verifierContext(sessionHash: Buffer): string {
  return `connect_session:${sessionHash.toString('base64url')}:pkce_verifier`;
}

function toSession(row: SessionRow): ConnectSession {
  return {
    tenant: row.tenant,
    connection: row.connection,
    provider: row.provider,
    scopes: row.scopes,
    returnUrl: row.return_url,
    status: row.status,
    expiresAt: new Date(row.expires_at),
  };
}
