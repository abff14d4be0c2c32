import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What a credential's whole life needs beyond its current token: since when it has been
 * failing (told when it recovers), the refresh token's absolute expiry when the provider
 * or the registration gave one, and the expiry it was last warned of, so that the warning
 * goes out once per grant and again only for a new expiry.
 */
export class RefreshTokenExpiry1765100000000 implements MigrationInterface {
  name = 'RefreshTokenExpiry1765100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE credentials ADD COLUMN failing_since timestamptz,
         ADD COLUMN refresh_token_expires_at timestamptz,
         ADD COLUMN expiry_warned_for timestamptz`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE credentials DROP COLUMN failing_since, DROP COLUMN refresh_token_expires_at,
         DROP COLUMN expiry_warned_for`,
    );
  }
}
