import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * One row per encryption key id ever configured, with a check value of the key
 * (HMAC-SHA256 of a constant under the key, cut to 16 bytes; never the key). A replica
 * whose TOKEN_ENCRYPTION_KEYS holds a different key under a known id refuses to start.
 */
export class EncryptionKeys1764500000000 implements MigrationInterface {
  name = 'EncryptionKeys1764500000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE encryption_keys (
        key_id      text        PRIMARY KEY,
        check_value bytea       NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE encryption_keys`);
  }
}
