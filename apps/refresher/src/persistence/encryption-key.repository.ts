import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

export interface KeyCheck {
  keyId: string;
  checkValue: Buffer;
}

export interface StoredKeyCheck extends KeyCheck {
  createdAt: Date;
}

/** A credential blob sealed under a key id, to try a key the table does not know yet. */
export interface SealedSample {
  tenant: string;
  connection: string;
  field: 'access' | 'refresh';
  blob: Buffer;
}

/** SQL of `encryption_keys`: the check value each key id was first seen with. */
@Injectable()
export class EncryptionKeyRepository {
  constructor(private readonly db: DataSource) {}

  /** The stored check values of these key ids (absent ids are simply missing). */
  async find(keyIds: string[]): Promise<StoredKeyCheck[]> {
    const rows: { key_id: string; check_value: Buffer; created_at: Date }[] = await this.db.query(
      `SELECT key_id, check_value, created_at FROM encryption_keys WHERE key_id = ANY($1::text[])`,
      [keyIds],
    );
    return rows.map((row) => ({ keyId: row.key_id, checkValue: row.check_value, createdAt: row.created_at }));
  }

  /**
   * Records check values for ids not stored yet. A replica starting at the same instant
   * with another key under the same id loses the race: the first value stays, and the
   * caller's `find` afterwards shows the mismatch.
   */
  async insertMissing(checks: KeyCheck[]): Promise<void> {
    if (checks.length === 0) return;
    await this.db.query(
      `INSERT INTO encryption_keys (key_id, check_value)
       SELECT * FROM unnest($1::text[], $2::bytea[])
       ON CONFLICT (key_id) DO NOTHING`,
      [checks.map((c) => c.keyId), checks.map((c) => c.checkValue)],
    );
  }

  /**
   * Up to `limit` secrets sealed under `keyId` (rows written before the table existed), from
   * as many rows: the first rows the scan meets, which is cheap at any table size (the check
   * runs once per key id, but must not read a million rows to do it).
   */
  async samplesSealedWith(keyId: string, limit: number): Promise<SealedSample[]> {
    const rows: {
      tenant: string;
      connection: string;
      access_token_enc: Buffer | null;
      refresh_token_enc: Buffer | null;
    }[] = await this.db.query(
      `SELECT tenant, connection, access_token_enc, refresh_token_enc FROM credentials
       WHERE key_id = $1 AND (access_token_enc IS NOT NULL OR refresh_token_enc IS NOT NULL)
       LIMIT $2`,
      [keyId, limit],
    );
    return rows.map((row) =>
      row.refresh_token_enc
        ? { tenant: row.tenant, connection: row.connection, field: 'refresh', blob: row.refresh_token_enc }
        : { tenant: row.tenant, connection: row.connection, field: 'access', blob: row.access_token_enc! },
    );
  }
}
