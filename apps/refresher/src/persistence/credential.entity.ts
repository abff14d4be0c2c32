import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * The credentials table. `tenant` leads the primary key and every index so that the
 * table can be distributed by tenant (Citus) without rewriting queries. Hot paths use
 * hand-written SQL in CredentialRepository; this entity documents the schema and
 * serves TypeORM's metadata (the migration is the source of truth).
 */
@Entity({ name: 'credentials' })
@Index('credentials_due_idx', ['shardBucket', 'nextRefreshAt'], { where: 'next_refresh_at IS NOT NULL' })
@Index('credentials_status_idx', ['tenant', 'status'])
export class CredentialEntity {
  @PrimaryColumn({ type: 'text' }) tenant!: string;
  @PrimaryColumn({ type: 'text' }) connection!: string;
  @Column({ type: 'text' }) provider!: string;
  /** hash(tenant) mod 16: lets the due-work claim run per bucket (one shard each under Citus). */
  @Column({ name: 'shard_bucket', type: 'smallint' }) shardBucket!: number;
  @Column({ type: 'text' }) status!: string;
  @Column({ type: 'integer' }) version!: number;
  @Column({ name: 'token_type', type: 'text' }) tokenType!: string;
  @Column({ type: 'text', nullable: true }) scope!: string | null;
  @Column({ name: 'access_token_enc', type: 'bytea', nullable: true }) accessTokenEnc!: Buffer | null;
  @Column({ name: 'refresh_token_enc', type: 'bytea', nullable: true }) refreshTokenEnc!: Buffer | null;
  @Column({ name: 'key_id', type: 'text', nullable: true }) keyId!: string | null;
  @Column({ name: 'issued_at', type: 'timestamptz', nullable: true }) issuedAt!: Date | null;
  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true }) expiresAt!: Date | null;
  @Column({ name: 'next_refresh_at', type: 'timestamptz', nullable: true }) nextRefreshAt!: Date | null;
  @Column({ name: 'last_refreshed_at', type: 'timestamptz', nullable: true }) lastRefreshedAt!: Date | null;
  @Column({ type: 'integer', default: 0 }) failures!: number;
  @Column({ name: 'last_error_code', type: 'text', nullable: true }) lastErrorCode!: string | null;
  @Column({ name: 'last_error_message', type: 'text', nullable: true }) lastErrorMessage!: string | null;
  @Column({ name: 'lease_id', type: 'uuid', nullable: true }) leaseId!: string | null;
  @Column({ name: 'lease_owner', type: 'text', nullable: true }) leaseOwner!: string | null;
  @Column({ name: 'lease_until', type: 'timestamptz', nullable: true }) leaseUntil!: Date | null;
  @Column({ name: 'failing_since', type: 'timestamptz', nullable: true }) failingSince!: Date | null;
  @Column({ name: 'refresh_token_expires_at', type: 'timestamptz', nullable: true })
  refreshTokenExpiresAt!: Date | null;
  /** The refresh-token expiry `token.expiring` was published for: once per grant. */
  @Column({ name: 'expiry_warned_for', type: 'timestamptz', nullable: true }) expiryWarnedFor!: Date | null;
  @Column({ type: 'jsonb', nullable: true }) metadata!: Record<string, string> | null;
  @Column({ name: 'connection_config', type: 'jsonb', nullable: true }) connectionConfig!: Record<
    string,
    string
  > | null;
  @Column({ type: 'jsonb', nullable: true }) extras!: Record<string, string> | null;
  @Column({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @Column({ name: 'updated_at', type: 'timestamptz' }) updatedAt!: Date;
}
