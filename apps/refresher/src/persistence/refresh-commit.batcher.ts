import type { CredentialKey } from '@tokenkeeper/contracts';
import type { Secret } from '@tokenkeeper/common';
import type { DataSource } from 'typeorm';
import type { CommittedChange } from '../domain/committed-change.js';
import type { Lease } from '../domain/credential.js';
import type { PendingAuditRecord } from './audit-record.js';
import type { CredentialMapper, CredentialRow } from './credential.mapper.js';

/** The refreshed token a fenced commit stores (CredentialRepository re-exports it). */
export interface TokenWrite {
  accessToken: Secret;
  refreshToken?: Secret;
  tokenType: string;
  scope?: string;
  issuedAt: Date;
  expiresAt: Date | null;
  nextRefreshAt: Date | null;
  /** The refresh token's absolute expiry after this commit (null: unknown). Absent: left as stored. */
  refreshTokenExpiresAt?: Date | null;
  /** Set when this commit publishes `token.expiring` for that expiry. Absent: left as stored. */
  expiryWarnedFor?: Date;
  /** Fields kept from this response (`tokenFields`); merged over the stored ones, so a field it lacks keeps its value. */
  extras?: Record<string, string>;
}

/** At most this many commits go into one statement (its parameters are arrays, so the statement text stays the same). */
export const MAX_COMMIT_BATCH = 128;

type BatchedRow = CredentialRow & { ord: string; audit_event_id: string | null };

interface PendingCommit {
  key: CredentialKey;
  lease: Lease;
  write: TokenWrite;
  audit: PendingAuditRecord[];
  resolve: (change: CommittedChange | null) => void;
  reject: (error: unknown) => void;
}

/**
 * The fenced commits of refreshed tokens, grouped: one statement stores every commit that
 * was asked for while the previous statement was in flight (natural group commit: an idle
 * commit is sent at once, with no timer), so that under load a refresh costs PostgreSQL a
 * fraction of a transaction and of a WAL flush instead of one each.
 *
 * Every guarantee of a single commit holds per row: each row is fenced on its own
 * (lease_id, version), the new refresh token is written in the same statement as the new
 * access token, a row's outbox records are inserted in the same statement (a CTE joined to
 * the rows that landed, so a loser writes none), and RETURNING says which rows landed: a
 * loser is answered null, exactly as a single commit whose fence no longer holds. Two
 * commits for one credential never share a statement (the later waits for the next one), so
 * within a batch the order of commits per credential is the order they were asked for.
 *
 * A batch that fails as a whole (connection lost, deadlock with another writer, a row the
 * statement rejects) is retried one commit per statement, so one bad row cannot fail the
 * others again and again; each commit then gets its own error or answer. A statement that
 * hangs holds the next batch only until the pool's query_timeout (DATABASE_STATEMENT_TIMEOUT_MS
 * + 2 s) fails it; the callers' retries (RotatedCommitRetrier.commitRotated) then join the next batch.
 */
export class RefreshCommitBatcher {
  private queue: PendingCommit[] = [];
  private inFlight = false;

  constructor(
    private readonly db: DataSource,
    private readonly mapper: CredentialMapper,
  ) {}

  commit(
    key: CredentialKey,
    lease: Lease,
    write: TokenWrite,
    audit: PendingAuditRecord[],
  ): Promise<CommittedChange | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ key, lease, write, audit, resolve, reject });
      if (!this.inFlight) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.inFlight = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.take();
        try {
          this.settle(batch, await this.store(batch));
        } catch (error) {
          if (batch.length === 1) batch[0].reject(error);
          else
            await Promise.all(
              batch.map((one) =>
                this.store([one]).then(
                  (rows) => this.settle([one], rows),
                  (e) => one.reject(e),
                ),
              ),
            );
        }
      }
    } finally {
      this.inFlight = false;
    }
  }

  /** The next batch: in arrival order, at most one commit per credential, at most MAX_COMMIT_BATCH. */
  private take(): PendingCommit[] {
    const batch: PendingCommit[] = [];
    const rest: PendingCommit[] = [];
    const seen = new Set<string>();
    for (const item of this.queue) {
      const id = `${item.key.tenant}\u0000${item.key.connection}`;
      if (batch.length >= MAX_COMMIT_BATCH || seen.has(id)) {
        rest.push(item);
        // A later commit of a credential that waits must not overtake it either.
        seen.add(id);
      } else {
        seen.add(id);
        batch.push(item);
      }
    }
    this.queue = rest;
    return batch;
  }

  private settle(batch: PendingCommit[], rows: BatchedRow[]): void {
    const landed = new Map(rows.map((row) => [Number(row.ord) - 1, row]));
    batch.forEach((item, i) => {
      const row = landed.get(i);
      item.resolve(
        row
          ? { kind: 'refreshed', credential: this.mapper.toDomain(row, item.write), eventId: row.audit_event_id ?? '' }
          : null,
      );
    });
  }

  /** One statement for the batch; rows come back only for the commits whose fence held. */
  private store(batch: PendingCommit[]): Promise<BatchedRow[]> {
    const col = <T>(f: (item: PendingCommit) => T) => batch.map(f);
    return this.db.query(
      `WITH v AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::integer[], $5::bytea[], $6::bytea[], $7::text[],
                              $8::text[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::jsonb[],
                              $14::boolean[], $15::timestamptz[], $16::timestamptz[], $17::jsonb[])
           WITH ORDINALITY AS v(tenant, connection, lease_id, version, access_enc, refresh_enc, token_type,
                                scope, issued_at, expires_at, next_refresh_at, audit, rt_expiry_set, rt_expires_at,
                                warned_for, extras, ord)
       ), changed AS (
         UPDATE credentials c SET
           access_token_enc = v.access_enc, refresh_token_enc = COALESCE(v.refresh_enc, c.refresh_token_enc), key_id = $13,
           token_type = v.token_type, scope = COALESCE(v.scope, c.scope), issued_at = v.issued_at, expires_at = v.expires_at,
           next_refresh_at = v.next_refresh_at, last_refreshed_at = now(), version = c.version + 1, status = 'active',
           failures = 0, last_error_code = NULL, last_error_message = NULL, failing_since = NULL,
           refresh_token_expires_at = CASE WHEN v.rt_expiry_set THEN v.rt_expires_at ELSE c.refresh_token_expires_at END,
           expiry_warned_for = COALESCE(v.warned_for, c.expiry_warned_for),
           lease_id = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now(),
           extras = CASE WHEN v.extras IS NULL THEN c.extras ELSE COALESCE(c.extras, '{}'::jsonb) || v.extras END
         FROM v
         WHERE c.tenant = v.tenant AND c.connection = v.connection AND c.lease_id = v.lease_id AND c.version = v.version
         -- Not the ciphertexts this statement has just written: the caller holds their plaintext
         -- (mapper.toDomain's "written"), and decoding two bytea per row was wasted CPU. A kept
         -- refresh token (none in the write) comes back, to be decrypted as before.
         RETURNING c.tenant, c.connection, c.provider, c.status, c.version, c.token_type, c.scope,
           NULL::bytea AS access_token_enc, CASE WHEN v.refresh_enc IS NULL THEN c.refresh_token_enc END AS refresh_token_enc,
           c.key_id, c.issued_at, c.expires_at, c.next_refresh_at, c.last_refreshed_at, c.failures,
           c.last_error_code, c.last_error_message, c.lease_id, c.lease_owner, c.created_at, c.updated_at,
           c.failing_since, c.refresh_token_expires_at, c.expiry_warned_for,
           c.metadata, c.connection_config, c.extras, v.ord, v.audit AS audit_in
       ), audit AS (
         INSERT INTO outbox (event_id, tenant, connection, type, subject, payload)
         SELECT r.event_id, c.tenant, c.connection, r.type, r.subject, r.payload || jsonb_build_object('version', c.version)
         FROM changed c CROSS JOIN jsonb_to_recordset(c.audit_in) AS r(event_id uuid, type text, subject text, payload jsonb)
         RETURNING event_id, tenant, connection, type
       )
       -- The refresh's own record names the refreshed event; a recovered or expiring record
       -- committed alongside has its own event, whose id the caller made.
       SELECT changed.*, (SELECT a.event_id FROM audit a WHERE a.tenant = changed.tenant AND a.connection = changed.connection
                            AND a.type NOT IN ('recovered', 'expiring') LIMIT 1) AS audit_event_id
       FROM changed`,
      [
        col((i) => i.key.tenant),
        col((i) => i.key.connection),
        col((i) => i.lease.leaseId),
        col((i) => i.lease.version),
        col((i) => this.mapper.seal(i.key.tenant, i.key.connection, 'access', i.write.accessToken)),
        col((i) => this.mapper.seal(i.key.tenant, i.key.connection, 'refresh', i.write.refreshToken)),
        col((i) => i.write.tokenType),
        col((i) => i.write.scope ?? null),
        col((i) => i.write.issuedAt),
        col((i) => i.write.expiresAt),
        col((i) => i.write.nextRefreshAt),
        col((i) => JSON.stringify(i.audit)),
        this.mapper.primaryKeyId,
        col((i) => i.write.refreshTokenExpiresAt !== undefined),
        col((i) => i.write.refreshTokenExpiresAt ?? null),
        col((i) => i.write.expiryWarnedFor ?? null),
        col((i) => (i.write.extras && Object.keys(i.write.extras).length > 0 ? JSON.stringify(i.write.extras) : null)),
      ],
    );
  }
}
