import type { MigrationInterface, QueryRunner } from 'typeorm';

export class AuditRecords1764200000000 implements MigrationInterface {
  name = 'AuditRecords1764200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE audit_records (
        id          bigserial   PRIMARY KEY,
        event_id    uuid        NOT NULL UNIQUE,
        tenant      text        NOT NULL,
        connection  text        NOT NULL,
        provider    text        NOT NULL,
        type        text        NOT NULL,
        version     integer     NOT NULL,
        outcome     text,
        code        text,
        message     text,
        at          timestamptz NOT NULL,
        replica     text        NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
      )`);
    // audit.query reads newest first with keyset paging on (at, id): one index per filter shape.
    await queryRunner.query(
      `CREATE INDEX audit_records_credential_idx ON audit_records (tenant, connection, at DESC, id DESC)`,
    );
    await queryRunner.query(`CREATE INDEX audit_records_tenant_idx ON audit_records (tenant, at DESC, id DESC)`);
    await queryRunner.query(`CREATE INDEX audit_records_at_idx ON audit_records (at DESC, id DESC)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE audit_records`);
  }
}
