import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A credential's non-secret companions: the caller's `metadata`, the `connection_config`
 * that fills its provider's URL placeholders, and the `extras` kept from token responses.
 * None is a secret, so they are plain jsonb (never in the encrypted columns); NULL means
 * none, so existing rows need no rewrite. Connect sessions carry the connection config from
 * the connect request to the credential the callback stores.
 */
export class CredentialFields1765300000000 implements MigrationInterface {
  name = 'CredentialFields1765300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE credentials
        ADD COLUMN metadata jsonb,
        ADD COLUMN connection_config jsonb,
        ADD COLUMN extras jsonb
    `);
    await queryRunner.query(`ALTER TABLE connect_sessions ADD COLUMN connection_config jsonb`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE connect_sessions DROP COLUMN connection_config`);
    await queryRunner.query(`
      ALTER TABLE credentials DROP COLUMN extras, DROP COLUMN connection_config, DROP COLUMN metadata
    `);
  }
}
