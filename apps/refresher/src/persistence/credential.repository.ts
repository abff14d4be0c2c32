import { Injectable, Logger } from '@nestjs/common';
import type { CredentialKey, CredentialStatus, ErrorBody } from '@tokenkeeper/contracts';
import type { Secret } from '@tokenkeeper/common';
import { DataSource } from 'typeorm';
import type { CommittedChange } from '../domain/committed-change.js';
import { Clock } from '../domain/clock.js';
import type { Credential, Lease, LeasedCredential } from '../domain/credential.js';
import {
  CredentialMapper,
  type CredentialRow,
  hasUnreadableToken,
  SHARD_BUCKETS,
  shardBucketOf,
} from './credential.mapper.js';
import { auditRecord, claimAuditTemplate, type PendingAuditRecord } from './audit-record.js';
import { RefreshCommitBatcher, type TokenWrite } from './refresh-commit.batcher.js';
import type { CredentialStore } from './credential-store.port.js';

type CommittedRow = CredentialRow & { audit_event_id: string | null };

/**
 * Inserts the statement's audit records (built by audit-record.ts) for the row in
 * `changed`, stamping the committed version; `audit_event_id` hands the outbox row's id
 * back with the row, for the core event.
 */
const AUDIT_CTE = (param: number) => `
  audit AS (
    INSERT INTO outbox (event_id, tenant, connection, type, subject, payload)
    SELECT r.event_id, c.tenant, c.connection, r.type, r.subject, r.payload || jsonb_build_object('version', c.version)
    FROM changed c CROSS JOIN jsonb_to_recordset($${param}::jsonb) AS r(event_id uuid, type text, subject text, payload jsonb)
    RETURNING event_id
  )`;
const CHANGED_WITH_EVENT_ID = `SELECT changed.*, (SELECT event_id FROM audit LIMIT 1) AS audit_event_id FROM changed`;

/**
 * Inserts the record built by claimAuditTemplate for each row in `changed`, stamping the
 * row's identity and version: which rows a claim takes is known only inside the statement,
 * and the claim and its records commit together.
 */
const CLAIM_AUDIT_CTE = (param: number) => `
  started AS (SELECT gen_random_uuid() AS event_id, c.* FROM changed c),
  audit AS (
    INSERT INTO outbox (event_id, tenant, connection, type, subject, payload)
    SELECT s.event_id, s.tenant, s.connection, t.type, t.subject_prefix || s.tenant || '.' || s.connection,
           t.payload || jsonb_build_object('eventId', s.event_id, 'tenant', s.tenant, 'connection', s.connection,
             'provider', s.provider, 'version', s.version)
    FROM started s CROSS JOIN jsonb_to_record($${param}::jsonb) AS t(type text, subject_prefix text, payload jsonb)
  )`;

/** What a parked (undecryptable) credential says in describe; also how a parked row is recognised. */
export const QUARANTINE_MESSAGE = 'stored token cannot be decrypted (unknown key or corrupted ciphertext)';
const QUARANTINED = `status = 'failing' AND last_error_code = 'internal' AND last_error_message = '${QUARANTINE_MESSAGE}'`;

/**
 * A lease with its local deadline: epoch ms (Clock) taken BEFORE the statement that set
 * `lease_until = now() + lease` ran, so the local deadline is never later than the
 * database's, however long the statement waited for locks or the reply for the event loop.
 */
export interface TimedLease extends LeasedCredential {
  leaseUntilMs: number;
}

/**
 * How many rows of each provider a claim may take (the provider's free request slots); a
 * provider not named may take `others` rows. A provider with 0 is not claimed at all.
 */
export interface ClaimRoom {
  perProvider: Record<string, number>;
  others: number;
}

/** Clears a lease in an UPDATE's SET list. */
const NO_LEASE = 'lease_id = NULL, lease_owner = NULL, lease_until = NULL';
/** Statuses whose credentials the refresher still works on. */
const LIVE = `status IN ('active', 'failing')`;

export type { TokenWrite } from './refresh-commit.batcher.js';

export interface Registration extends CredentialKey, Omit<TokenWrite, 'accessToken'> {
  provider: string;
  refreshTokenExpiresAt?: Date | null;
  /** Absent when only a refresh token (or nothing, for client_credentials) is registered. */
  accessToken?: Secret;
  metadata?: Record<string, string>;
  connectionConfig?: Record<string, string>;
}

/** An empty map is stored as none, so that a describe shows no empty object. */
function jsonOrNull(map: Record<string, string> | undefined): string | null {
  return map && Object.keys(map).length > 0 ? JSON.stringify(map) : null;
}

export interface FailureWrite {
  status: CredentialStatus;
  failures: number;
  lastError: ErrorBody;
  nextRefreshAt: Date | null;
}

export interface ListFilter {
  tenant?: string;
  status?: CredentialStatus;
  /** Only credentials whose refresh token's known absolute expiry is at most this many days away. */
  expiringWithinDays?: number;
  after?: CredentialKey;
  limit: number;
}

/**
 * All SQL about credentials. Every change is one statement (data-modifying CTEs), so
 * the change and its outbox records commit together in a single round trip; a change
 * returns as a CommittedChange (the row and its audit record's id). Every
 * write made under a lease is fenced on (lease_id, version): a replica whose lease was
 * taken over, or that read an older version, changes nothing.
 */
@Injectable()
export class CredentialRepository implements CredentialStore {
  private readonly logger = new Logger(CredentialRepository.name);
  /** Fenced commits of refreshed tokens, grouped into one statement while one is in flight. */
  private readonly commits: RefreshCommitBatcher;

  constructor(
    private readonly db: DataSource,
    private readonly mapper: CredentialMapper,
    private readonly clock: Clock = new Clock(),
  ) {
    this.commits = new RefreshCommitBatcher(db, mapper);
  }

  /**
   * Tolerant of undecryptable tokens (UnreadableSecret in their place): describe and the
   * backoff decision need no token. A parked row whose tokens decrypt again (the key is
   * back) is reported due now, so token.get may refresh it on demand at once.
   */
  async find(key: CredentialKey): Promise<Credential | null> {
    const rows: CredentialRow[] = await this.db.query(
      `SELECT * FROM credentials WHERE tenant = $1 AND connection = $2`,
      [key.tenant, key.connection],
    );
    return rows.length ? this.unparked(rows[0], this.mapper.toDomain(rows[0], undefined, 'tolerant')) : null;
  }

  async register(reg: Registration, audit: PendingAuditRecord[]): Promise<CommittedChange> {
    const access = this.mapper.seal(reg.tenant, reg.connection, 'access', reg.accessToken);
    const refresh = this.mapper.seal(reg.tenant, reg.connection, 'refresh', reg.refreshToken);
    const rows: CommittedRow[] = await this.db.query(
      `WITH changed AS (
         INSERT INTO credentials (tenant, connection, provider, shard_bucket, status, version, token_type, scope,
                                  access_token_enc, refresh_token_enc, key_id, issued_at, expires_at, next_refresh_at,
                                  refresh_token_expires_at, metadata, connection_config, extras)
         VALUES ($1, $2, $3, $4, 'active', 1, $5, $6, $7, $8, $9, $10, $11, $12, $14, $15, $16, $17)
         ON CONFLICT (tenant, connection) DO UPDATE SET
           provider = EXCLUDED.provider, status = 'active', version = credentials.version + 1,
           token_type = EXCLUDED.token_type, scope = EXCLUDED.scope,
           access_token_enc = EXCLUDED.access_token_enc, refresh_token_enc = EXCLUDED.refresh_token_enc,
           key_id = EXCLUDED.key_id, issued_at = EXCLUDED.issued_at, expires_at = EXCLUDED.expires_at,
           next_refresh_at = EXCLUDED.next_refresh_at, failures = 0, last_error_code = NULL,
           last_error_message = NULL, ${NO_LEASE}, updated_at = now(), failing_since = NULL,
           refresh_token_expires_at = EXCLUDED.refresh_token_expires_at, expiry_warned_for = NULL,
           metadata = EXCLUDED.metadata, connection_config = EXCLUDED.connection_config, extras = EXCLUDED.extras
         RETURNING *
       ), ${AUDIT_CTE(13)}
       ${CHANGED_WITH_EVENT_ID}`,
      [
        reg.tenant,
        reg.connection,
        reg.provider,
        shardBucketOf(reg.tenant),
        reg.tokenType,
        reg.scope ?? null,
        access,
        refresh,
        this.mapper.primaryKeyId,
        reg.issuedAt,
        reg.expiresAt,
        reg.nextRefreshAt,
        JSON.stringify(audit),
        reg.refreshTokenExpiresAt ?? null,
        jsonOrNull(reg.metadata),
        jsonOrNull(reg.connectionConfig),
        jsonOrNull(reg.extras),
      ],
    );
    return this.committed('registered', rows[0], reg);
  }

  /**
   * The shard buckets that hold claimable due work, in one statement: an idle tick then
   * costs one short read (a due-index probe per bucket) instead of a claim statement, a
   * transaction, per bucket.
   */
  async dueBuckets(): Promise<number[]> {
    const rows: { bucket: number }[] = await this.db.query(
      `SELECT b AS bucket FROM generate_series(0, $1::integer - 1) AS b
       WHERE EXISTS (SELECT 1 FROM credentials WHERE shard_bucket = b AND next_refresh_at <= now()
                       AND (lease_until IS NULL OR lease_until < now()))`,
      [SHARD_BUCKETS],
    );
    return rows.map((r) => Number(r.bucket));
  }

  /**
   * Claims up to `limit` due credentials of one shard bucket, most overdue first.
   * SKIP LOCKED lets replicas claim side by side without waiting on each other; an
   * expired lease (its holder died) makes the row claimable again.
   */
  async claimDue(
    bucket: number,
    limit: number,
    owner: string,
    leaseSeconds: number,
    room?: ClaimRoom,
  ): Promise<TimedLease[]> {
    // Providers without a free slot are left out of the scan; the others take at most their
    // free slots (row_number per provider over the locked candidates; rows locked but not
    // updated are unlocked at the end of the statement).
    const full = room
      ? Object.entries(room.perProvider)
          .filter(([, n]) => n <= 0)
          .map(([id]) => id)
      : [];
    const startedAt = this.clock.now();
    const rows: CredentialRow[] = await this.db.query(
      `WITH due AS (
         SELECT tenant, connection, provider, next_refresh_at FROM credentials
         WHERE shard_bucket = $1 AND next_refresh_at <= now() AND (lease_until IS NULL OR lease_until < now())
           AND NOT (provider = ANY($6::text[]))
         ORDER BY next_refresh_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED
       ), ranked AS (
         SELECT tenant, connection, row_number() OVER (PARTITION BY provider ORDER BY next_refresh_at) AS rn,
                COALESCE(($7::jsonb ->> provider)::integer, $8::integer) AS room
         FROM due
       ), changed AS (
         UPDATE credentials c
         SET lease_id = gen_random_uuid(), lease_owner = $3, lease_until = now() + make_interval(secs => $4)
         FROM ranked WHERE c.tenant = ranked.tenant AND c.connection = ranked.connection AND ranked.rn <= ranked.room
         RETURNING c.*
       ), ${CLAIM_AUDIT_CTE(5)}
       SELECT * FROM changed`,
      [
        bucket,
        limit,
        owner,
        leaseSeconds,
        JSON.stringify(claimAuditTemplate('refresh_started', owner)),
        full,
        JSON.stringify(room?.perProvider ?? {}),
        room?.others ?? limit,
      ],
    );
    const leased: TimedLease[] = [];
    for (const row of rows) {
      try {
        leased.push(this.leased(row, startedAt, leaseSeconds));
      } catch (error) {
        // One row that cannot be decrypted (key removed from TOKEN_ENCRYPTION_KEYS, or a
        // corrupted blob) must not hold up the rest of the batch, lease after lease.
        await this.quarantine(row, error);
      }
    }
    return leased;
  }

  /**
   * Parks an unreadable credential for an hour with an error an operator can see in
   * describe, and its audit record (the claim already wrote `refresh_started`).
   */
  private async quarantine(row: CredentialRow, error: unknown): Promise<void> {
    this.logger.error({
      msg: 'stored token cannot be decrypted; credential parked (check TOKEN_ENCRYPTION_KEYS)',
      tenant: row.tenant,
      connection: row.connection,
      keyId: row.key_id,
      error: (error as Error).constructor?.name,
    });
    const audit = auditRecord('failed', row, row.lease_owner ?? 'refresher', {
      outcome: 'quarantined',
      code: 'undecryptable',
      message: `stored token cannot be decrypted under key id "${row.key_id ?? ''}"; parked for an hour`,
    });
    await this.db.query(
      `WITH changed AS (
         UPDATE credentials SET status = 'failing', failures = failures + 1, last_error_code = 'internal',
           last_error_message = $4, next_refresh_at = now() + interval '1 hour', ${NO_LEASE}, updated_at = now()
         WHERE tenant = $1 AND connection = $2 AND lease_id = $3
         RETURNING *
       ), ${AUDIT_CTE(5)}
       SELECT 1 FROM changed`,
      [row.tenant, row.connection, row.lease_id, QUARANTINE_MESSAGE, JSON.stringify([audit])],
    );
  }

  /**
   * Extends a lease this replica holds, fenced on its lease id and version: true (with the
   * new local deadline, from the moment before the statement) while nobody took it over.
   */
  async extendLease(key: CredentialKey, lease: Lease, leaseSeconds: number): Promise<number | null> {
    const startedAt = this.clock.now();
    const rows: unknown[] = await this.db.query(
      `UPDATE credentials SET lease_until = now() + make_interval(secs => $5)
       WHERE tenant = $1 AND connection = $2 AND lease_id = $3 AND version = $4 RETURNING 1`,
      [key.tenant, key.connection, lease.leaseId, lease.version, leaseSeconds],
    );
    return rows.length ? startedAt + leaseSeconds * 1000 : null;
  }

  /**
   * Leases one credential for an on-demand refresh. With `expectedVersion`, only if the
   * stored version is still that one: a thousand reports of the same rejected version
   * lead to one lease, and none once the version has moved on.
   */
  async tryLease(
    key: CredentialKey,
    owner: string,
    leaseSeconds: number,
    expectedVersion?: number,
  ): Promise<TimedLease | null> {
    const startedAt = this.clock.now();
    const rows: CredentialRow[] = await this.db.query(
      `WITH changed AS (
         UPDATE credentials
         SET lease_id = gen_random_uuid(), lease_owner = $3, lease_until = now() + make_interval(secs => $4)
         WHERE tenant = $1 AND connection = $2 AND ${LIVE}
           AND (lease_until IS NULL OR lease_until < now())
           AND ($5::integer IS NULL OR version = $5)
         RETURNING *
       ), ${CLAIM_AUDIT_CTE(6)}
       SELECT * FROM changed`,
      [
        key.tenant,
        key.connection,
        owner,
        leaseSeconds,
        expectedVersion ?? null,
        JSON.stringify(claimAuditTemplate('refresh_started', owner)),
      ],
    );
    if (!rows.length) return null;
    try {
      return this.leased(rows[0], startedAt, leaseSeconds);
    } catch (error) {
      await this.quarantine(rows[0], error);
      throw error;
    }
  }

  /**
   * Stores a new token under the lease; null when the fence no longer holds. Commits asked
   * for while another is in flight share its successor's statement (RefreshCommitBatcher),
   * each still fenced on its own lease and version, with its own outbox records.
   */
  commitRefresh(
    key: CredentialKey,
    lease: Lease,
    write: TokenWrite,
    audit: PendingAuditRecord[],
  ): Promise<CommittedChange | null> {
    return this.commits.commit(key, lease, write, audit);
  }

  /** Records a failed attempt under the lease and releases it; null when the fence no longer holds. */
  async commitFailure(
    key: CredentialKey,
    lease: Lease,
    write: FailureWrite,
    audit: PendingAuditRecord[],
  ): Promise<CommittedChange | null> {
    const rows: CommittedRow[] = await this.db.query(
      `WITH changed AS (
         UPDATE credentials SET status = $5, failures = $6, last_error_code = $7, last_error_message = $8,
           next_refresh_at = $9, ${NO_LEASE}, updated_at = now(),
           failing_since = CASE WHEN $5 = 'failing' THEN COALESCE(failing_since, now()) ELSE failing_since END
         WHERE tenant = $1 AND connection = $2 AND lease_id = $3 AND version = $4
         RETURNING *
       ), ${AUDIT_CTE(10)}
       ${CHANGED_WITH_EVENT_ID}`,
      [
        key.tenant,
        key.connection,
        lease.leaseId,
        lease.version,
        write.status,
        write.failures,
        write.lastError.code,
        write.lastError.message,
        write.nextRefreshAt,
        JSON.stringify(audit),
      ],
    );
    return rows.length ? this.committed('failed', rows[0]) : null;
  }

  /** Gives a lease back unused (shutdown, or nothing to do). */
  async releaseLease(key: CredentialKey, lease: Lease): Promise<void> {
    await this.db.query(`UPDATE credentials SET ${NO_LEASE} WHERE tenant = $1 AND connection = $2 AND lease_id = $3`, [
      key.tenant,
      key.connection,
      lease.leaseId,
    ]);
  }

  /** Marks a credential revoked (a new version) and forgets its tokens; returns the row as it was before, and the change. */
  async revoke(
    key: CredentialKey,
    audit: PendingAuditRecord,
  ): Promise<{ before: Credential; change: CommittedChange } | null> {
    return this.db.transaction(async (tx) => {
      const before: CredentialRow[] = await tx.query(
        `SELECT * FROM credentials WHERE tenant = $1 AND connection = $2 FOR UPDATE`,
        [key.tenant, key.connection],
      );
      if (before.length === 0) return null;
      const after: CommittedRow[] = await tx.query(
        `WITH changed AS (
           UPDATE credentials SET status = 'revoked', access_token_enc = NULL, refresh_token_enc = NULL,
             next_refresh_at = NULL, ${NO_LEASE}, updated_at = now(),
             -- the wire contract: a revoke is a version of its own, so no cache takes the revoked token for current.
             version = version + 1
           WHERE tenant = $1 AND connection = $2
           RETURNING *
         ), ${AUDIT_CTE(3)}
         ${CHANGED_WITH_EVENT_ID}`,
        [key.tenant, key.connection, JSON.stringify([audit])],
      );
      // Revoking needs no token: one this process cannot decrypt is simply not revoked at the provider.
      const previous = this.mapper.toDomain(before[0], undefined, 'tolerant');
      if (previous.accessToken && hasUnreadableToken({ accessToken: previous.accessToken }))
        previous.accessToken = undefined;
      if (previous.refreshToken && hasUnreadableToken({ refreshToken: previous.refreshToken }))
        previous.refreshToken = undefined;
      return { before: previous, change: this.committed('revoked', after[0]) };
    });
  }

  async list(filter: ListFilter): Promise<Credential[]> {
    const rows: CredentialRow[] = await this.db.query(
      `SELECT * FROM credentials
       WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR status = $2)
         AND ($3::text IS NULL OR (tenant, connection) > ($3, $4))
         AND ($6::float8 IS NULL OR refresh_token_expires_at <= now() + $6::float8 * interval '1 day')
       ORDER BY tenant, connection
       LIMIT $5`,
      [
        filter.tenant ?? null,
        filter.status ?? null,
        filter.after?.tenant ?? null,
        filter.after?.connection ?? null,
        filter.limit,
        filter.expiringWithinDays ?? null,
      ],
    );
    return rows.map((row) => this.mapper.toDomain(row, undefined, 'tolerant'));
  }

  /**
   * What a start with a changed providers file looks at, in one scan: the (provider, tenant)
   * pairs of live credentials of the restricting providers, and of those marked `forbidden`
   * (`marked`), whatever their provider.
   */
  async tenantsToCheck(restricting: string[]): Promise<{ provider: string; tenant: string; marked: boolean }[]> {
    return this.db.query(
      `SELECT DISTINCT provider, tenant, last_error_code IS NOT DISTINCT FROM 'forbidden' AS marked FROM credentials
       WHERE ${LIVE} AND (provider = ANY($1::text[]) OR last_error_code = 'forbidden')`,
      [restricting],
    );
  }

  /**
   * Makes the live credentials of one provider and these tenants due now: those marked
   * `forbidden` (`marked`), or those not marked.
   */
  async makeDueNow(provider: string, tenants: string[], marked: boolean): Promise<number> {
    const rows: { n: number }[] = await this.db.query(
      `WITH changed AS (
         UPDATE credentials SET next_refresh_at = now()
         WHERE provider = $1 AND tenant = ANY($2::text[]) AND ${LIVE}
           AND (last_error_code IS NOT DISTINCT FROM 'forbidden') = $3
           AND (next_refresh_at IS NULL OR next_refresh_at > now())
         RETURNING 1
       ) SELECT count(*)::int AS n FROM changed`,
      [provider, tenants, marked],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * Re-seals up to `limit` rows written under an older key, walking the primary key
   * from `after`; returns where to continue (null at the end of the table).
   */
  async reencryptBatch(
    after: CredentialKey | null,
    limit: number,
  ): Promise<{ next: CredentialKey | null; rewritten: number; unreadable: CredentialKey[]; unparked: number }> {
    const rows: CredentialRow[] = await this.db.query(
      `SELECT * FROM credentials WHERE ($1::text IS NULL OR (tenant, connection) > ($1, $2))
       ORDER BY tenant, connection LIMIT $3`,
      [after?.tenant ?? null, after?.connection ?? null, limit],
    );
    let rewritten = 0;
    let unparked = 0;
    const unreadable: CredentialKey[] = [];
    for (const row of rows) {
      const credential = this.mapper.toDomain(row, undefined, 'tolerant');
      if (hasUnreadableToken(credential)) {
        // Skipped and reported: one bad row must not stop the sweep for the rest of the table.
        unreadable.push({ tenant: row.tenant, connection: row.connection });
        continue;
      }
      if (this.isParked(row)) unparked += await this.unpark(row);
      if (row.key_id === null || row.key_id === this.mapper.primaryKeyId) continue;
      const result: unknown[] = await this.db.query(
        `UPDATE credentials SET access_token_enc = $4, refresh_token_enc = $5, key_id = $6
         WHERE tenant = $1 AND connection = $2 AND version = $3 AND key_id = $7 RETURNING 1`,
        [
          row.tenant,
          row.connection,
          row.version,
          this.mapper.seal(row.tenant, row.connection, 'access', credential.accessToken),
          this.mapper.seal(row.tenant, row.connection, 'refresh', credential.refreshToken),
          this.mapper.primaryKeyId,
          row.key_id,
        ],
      );
      rewritten += result.length;
    }
    const last = rows.at(-1);
    return {
      next: rows.length < limit || !last ? null : { tenant: last.tenant, connection: last.connection },
      rewritten,
      unreadable,
      unparked,
    };
  }

  get bucketCount(): number {
    return SHARD_BUCKETS;
  }

  private committed(
    kind: CommittedChange['kind'],
    row: CommittedRow,
    written?: { accessToken?: Secret; refreshToken?: Secret },
  ): CommittedChange {
    // A change always writes its audit record; only tests call without one.
    return { kind, credential: this.mapper.toDomain(row, written), eventId: row.audit_event_id ?? '' };
  }

  private leased(row: CredentialRow, startedAt: number, leaseSeconds: number): TimedLease {
    return {
      credential: this.mapper.toDomain(row),
      lease: { leaseId: row.lease_id!, version: row.version },
      leaseUntilMs: startedAt + leaseSeconds * 1000,
    };
  }

  private isParked(row: CredentialRow): boolean {
    return (
      row.status === 'failing' && row.last_error_code === 'internal' && row.last_error_message === QUARANTINE_MESSAGE
    );
  }

  /** A parked row whose tokens decrypt again is due now (the scheduler and token.get may refresh it). */
  private unparked(row: CredentialRow, credential: Credential): Credential {
    if (!this.isParked(row) || hasUnreadableToken(credential) || !credential.nextRefreshAt) return credential;
    return credential.nextRefreshAt.getTime() > row.updated_at.getTime()
      ? { ...credential, nextRefreshAt: row.updated_at }
      : credential;
  }

  /** The sweep found a parked row readable again: make it due now, so the scheduler takes it. */
  private async unpark(row: CredentialRow): Promise<number> {
    const result: unknown[] = await this.db.query(
      `UPDATE credentials SET next_refresh_at = now() WHERE tenant = $1 AND connection = $2 AND version = $3 AND ${QUARANTINED} RETURNING 1`,
      [row.tenant, row.connection, row.version],
    );
    return result.length;
  }
}
