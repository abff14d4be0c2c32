import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Each outbox row gets its own random id, the record's JetStream `Nats-Msg-Id` and audit
 * key. The event id it replaces there is shown on core `token.*` events, so whoever saw
 * the event could publish a forgery under it first, and JetStream would then drop the
 * genuine record as a duplicate. Existing rows get fresh ids too: for an
 * unpublished row that is harmless, and published rows are never sent again.
 */
export class OutboxRecordId1764700000000 implements MigrationInterface {
  name = 'OutboxRecordId1764700000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE outbox ADD COLUMN record_id uuid NOT NULL DEFAULT gen_random_uuid()`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE outbox DROP COLUMN record_id`);
  }
}
