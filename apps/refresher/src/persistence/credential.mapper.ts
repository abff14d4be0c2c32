import { crc32 } from 'node:zlib';
import { Secret } from '@tokenkeeper/common';
import { ContractError, type CredentialStatus } from '@tokenkeeper/contracts';
import { tokenAad, type TokenCipher } from '../crypto/token-cipher.js';
import type { Credential } from '../domain/credential.js';

export const SHARD_BUCKETS = 16;

/** Stable across processes and versions: the bucket is stored and indexed. */
export function shardBucketOf(tenant: string): number {
  return crc32(tenant) % SHARD_BUCKETS;
}

/** A `credentials` row as PostgreSQL returns it (snake_case, bytea as Buffer). */
export interface CredentialRow {
  tenant: string;
  connection: string;
  provider: string;
  status: CredentialStatus;
  version: number;
  token_type: string;
  scope: string | null;
  access_token_enc: Buffer | null;
  refresh_token_enc: Buffer | null;
  key_id: string | null;
  issued_at: Date | null;
  expires_at: Date | null;
  next_refresh_at: Date | null;
  last_refreshed_at: Date | null;
  failures: number;
  last_error_code: string | null;
  last_error_message: string | null;
  lease_id: string | null;
  lease_owner?: string | null;
  failing_since?: Date | null;
  refresh_token_expires_at?: Date | null;
  expiry_warned_for?: Date | null;
  created_at: Date;
  updated_at: Date;
  metadata?: Record<string, string> | null;
  connection_config?: Record<string, string> | null;
  extras?: Record<string, string> | null;
}

/**
 * A stored token this process cannot decrypt (key missing from TOKEN_ENCRYPTION_KEYS, or a
 * corrupted blob). It says "a token is stored" to metadata calls (describe, list, revoke)
 * and refuses to be revealed, so one bad row fails only the calls that need its token.
 */
export class UnreadableSecret extends Secret {
  constructor() {
    super('');
  }
  override reveal(): string {
    throw new ContractError('internal', 'stored token cannot be decrypted (unknown key or corrupted ciphertext)');
  }
  override equals(): boolean {
    return false;
  }
}

/** True when a credential carries a token this process could not decrypt. */
export function hasUnreadableToken(credential: { accessToken?: Secret; refreshToken?: Secret }): boolean {
  return credential.accessToken instanceof UnreadableSecret || credential.refreshToken instanceof UnreadableSecret;
}

/**
 * How a row's tokens are opened: `strict` throws on a blob that does not decrypt (work that
 * needs the tokens: claims, leases, commits); `tolerant` puts an UnreadableSecret in its place
 * (reads that may only need metadata).
 */
export type OpenMode = 'strict' | 'tolerant';

/** Turns rows into domain credentials, decrypting on the way out; nothing else sees a row. */
export class CredentialMapper {
  constructor(private readonly cipher: TokenCipher) {}

  /**
   * `written`: the secrets this statement has just stored, so that a write is not
   * followed by decrypting what was encrypted a moment ago (the refresh loop's hot path).
   */
  toDomain(
    row: CredentialRow,
    written?: { accessToken?: Secret; refreshToken?: Secret },
    mode: OpenMode = 'strict',
  ): Credential {
    const credential: Credential = {
      tenant: row.tenant,
      connection: row.connection,
      provider: row.provider,
      status: row.status,
      version: row.version,
      tokenType: row.token_type,
      scope: row.scope ?? undefined,
      accessToken: written?.accessToken ?? this.open(row, row.access_token_enc, 'access', mode),
      refreshToken: written?.refreshToken ?? this.open(row, row.refresh_token_enc, 'refresh', mode),
      issuedAt: row.issued_at,
      expiresAt: row.expires_at,
      nextRefreshAt: row.next_refresh_at,
      lastRefreshedAt: row.last_refreshed_at,
      failures: row.failures,
      lastError: row.last_error_code
        ? { code: row.last_error_code as never, message: row.last_error_message ?? '' }
        : null,
      failingSince: row.failing_since ?? null,
      refreshTokenExpiresAt: row.refresh_token_expires_at ?? null,
      expiryWarnedFor: row.expiry_warned_for ?? null,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    };
    if (row.metadata) credential.metadata = row.metadata;
    if (row.connection_config) credential.connectionConfig = row.connection_config;
    if (row.extras) credential.extras = row.extras;
    return credential;
  }

  seal(tenant: string, connection: string, field: 'access' | 'refresh', secret: Secret | undefined): Buffer | null {
    return secret ? this.cipher.encrypt(secret, tokenAad(tenant, connection, field)) : null;
  }

  get primaryKeyId(): string {
    return this.cipher.primaryKeyId;
  }

  private open(
    row: CredentialRow,
    blob: Buffer | null,
    field: 'access' | 'refresh',
    mode: OpenMode,
  ): Secret | undefined {
    if (!blob) return undefined;
    if (mode === 'strict') return this.cipher.decrypt(blob, tokenAad(row.tenant, row.connection, field));
    try {
      return this.cipher.decrypt(blob, tokenAad(row.tenant, row.connection, field));
    } catch {
      return new UnreadableSecret();
    }
  }
}
