import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Records are unique by their own id (`record_id`, the JetStream message id), no longer by
 * the event id that core `token.*` events show: a record forged under a seen event id must
 * not keep the genuine one out. Rows stored before keep their event id as record id,
 * which was their message id then.
 */
export class AuditRecordId1764700000000 implements MigrationInterface {
  name = 'AuditRecordId1764700000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE audit_records ADD COLUMN record_id uuid`);
    await queryRunner.query(`UPDATE audit_records SET record_id = event_id`);
    await queryRunner.query(`ALTER TABLE audit_records ALTER COLUMN record_id SET NOT NULL`);
    await queryRunner.query(`ALTER TABLE audit_records ADD CONSTRAINT audit_records_record_id_key UNIQUE (record_id)`);
    await queryRunner.query(`ALTER TABLE audit_records DROP CONSTRAINT audit_records_event_id_key`);
    await queryRunner.query(`CREATE INDEX audit_records_event_idx ON audit_records (event_id)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX audit_records_event_idx`);
    await queryRunner.query(`ALTER TABLE audit_records ADD CONSTRAINT audit_records_event_id_key UNIQUE (event_id)`);
    await queryRunner.query(`ALTER TABLE audit_records DROP COLUMN record_id`);
  }
}
