import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Records the audit app could not store: the reason, where it came from
 * (subject, stream sequence) and its identifying fields, as text since a value outside
 * its column is often the very reason. Never the message, nor any field outside the
 * allow-list: nothing free-form that could carry a secret.
 */
export class AuditDeadLetters1764600000000 implements MigrationInterface {
  name = 'AuditDeadLetters1764600000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE audit_dead_letters (
        id          bigserial   PRIMARY KEY,
        stream_seq  bigint      NOT NULL,
        subject     text,
        reason      text        NOT NULL,
        event_id    uuid,
        type        text,
        tenant      text,
        connection  text,
        provider    text,
        version     text,
        at          text,
        replica     text,
        outcome     text,
        code        text,
        received_at timestamptz NOT NULL DEFAULT now()
      )`);
    // A redelivery (crash between insert and ack) is stored once.
    await queryRunner.query(
      `CREATE UNIQUE INDEX audit_dead_letters_event_idx ON audit_dead_letters (event_id) WHERE event_id IS NOT NULL`,
    );
    await queryRunner.query(`CREATE INDEX audit_dead_letters_received_idx ON audit_dead_letters (received_at DESC)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE audit_dead_letters`);
  }
}
