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
  /** Non-secret labels from the connect request (`displayName` is shown on the page). */
  metadata: Record<string, string>;
  /** Fills the provider's URL placeholders, and is stored with the credential. */
  connectionConfig: Record<string, string>;
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
  metadata: Record<string, string>;
  connectionConfig: Record<string, string>;
  createdAt: Date;
  expiresAt: Date;
}

interface SessionRow {
  tenant: string;
  connection: string;
  provider: string;
  scopes: string[];
  return_url: string | null;
  metadata: Record<string, string> | null;
  connection_config?: Record<string, string> | null;
  status: ConnectSession['status'];
  expires_at: Date;
  session_hash: Buffer;
  verifier_enc: Buffer | null;
}

/**
 * Inserts one audit record about the session's credential, stamped with the credential's
 * version if it exists (0 before the first grant): the session change and its record commit
 * together, as every lifecycle change does.
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

  /**
   * A new session, unless its tenant already has `maxOpen` sessions neither ended nor expired:
   * then nothing is written and the answer says when the first of them expires. The count and
   * the insert run under a per-tenant transaction lock, so replicas together keep the cap.
   */
  async create(
    session: NewConnectSession,
    audit: PendingAuditRecord,
    maxOpen: number,
  ): Promise<{ created: true } | { created: false; nextExpiry: Date }> {
    return this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtext('connect_sessions'), hashtext($1))`, [session.tenant]);
      const [open]: { count: number; next: Date | null }[] = await tx.query(
        `SELECT count(*)::int AS count, min(expires_at) AS next FROM connect_sessions
         WHERE tenant = $1 AND status IN ('created', 'redirected', 'completing') AND expires_at > $2`,
        [session.tenant, session.createdAt],
      );
      if (open.count >= maxOpen) return { created: false, nextExpiry: new Date(open.next!) };
      await tx.query(
        `WITH s AS (
           INSERT INTO connect_sessions (session_hash, tenant, connection, provider, scopes, return_url, metadata, status, created_at, expires_at, connection_config)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'created', $8, $9, $11)
           RETURNING tenant, connection
         ), ${SESSION_AUDIT_CTE(10)}
         SELECT 1`,
        [
          session.sessionHash,
          session.tenant,
          session.connection,
          session.provider,
          session.scopes,
          session.returnUrl,
          JSON.stringify(session.metadata),
          session.createdAt,
          session.expiresAt,
          JSON.stringify(audit),
          JSON.stringify(session.connectionConfig),
        ],
      );
      return { created: true };
    });
  }

  /**
   * The person pressed the page's button: binds a state, a verifier and that browser (the
   * hash of its cookie's value) to the session, once. Null: unknown, used or expired.
   */
  async beginRedirect(
    sessionHash: Buffer,
    stateHash: Buffer,
    verifier: Secret,
    browserHash: Buffer,
    now: Date,
  ): Promise<ConnectSession | null> {
    // An UPDATE … RETURNING answers [rows, count] through TypeORM's postgres driver.
    const [rows]: [SessionRow[], number] = await this.db.query(
      `UPDATE connect_sessions SET status = 'redirected', state_hash = $2, verifier_enc = $3, browser_hash = $5, redirected_at = $4
       WHERE session_hash = $1 AND status = 'created' AND expires_at > $4
       RETURNING *`,
      [sessionHash, stateHash, this.cipher.encrypt(verifier, verifierContext(sessionHash)), now, browserHash],
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
   * The callback took the session named by `state`, in the browser that started it: from
   * here on nobody else can. Returns the session with its verifier and its hash (the key of
   * the next step); null when the state is unknown, was used, its session expired, or the
   * browser is another one (`browserHash` null or different).
   */
  async takeForCallback(
    stateHash: Buffer,
    browserHash: Buffer | null,
    now: Date,
  ): Promise<{ session: ConnectSession; sessionHash: Buffer; verifier: Secret } | null> {
    if (!browserHash) return null;
    const [rows]: [SessionRow[], number] = await this.db.query(
      `UPDATE connect_sessions SET status = 'completing'
       WHERE state_hash = $1 AND status = 'redirected' AND expires_at > $2 AND browser_hash = $3
       RETURNING *`,
      [stateHash, now, browserHash],
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
    const [, count] = await this.db.query<[unknown, number]>(
      `DELETE FROM connect_sessions WHERE session_hash IN (
         SELECT session_hash FROM connect_sessions WHERE expires_at < $1 ORDER BY expires_at LIMIT $2
       )`,
      [before, limit],
    );
    return Number(count ?? 0);
  }

  /**
   * Ends a session whose answer reached another browser than the one that started it, with
   * its record: the code is never exchanged, and the session cannot be finished afterwards
   * either. False when it was no longer waiting for its callback (taken or expired meanwhile).
   */
  async refuseOtherBrowser(stateHash: Buffer, now: Date, audit: PendingAuditRecord): Promise<boolean> {
    const rows: { tenant: string }[] = await this.db.query(
      `WITH s AS (
         UPDATE connect_sessions SET status = 'failed', verifier_enc = NULL, finished_at = $2
         WHERE state_hash = $1 AND status = 'redirected' AND expires_at > $2 RETURNING tenant, connection
       ), ${SESSION_AUDIT_CTE(3)}
       SELECT tenant FROM s`,
      [stateHash, now, JSON.stringify(audit)],
    );
    return rows.length > 0;
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
    metadata: row.metadata ?? {},
    connectionConfig: row.connection_config ?? {},
    status: row.status,
    expiresAt: new Date(row.expires_at),
  };
}
