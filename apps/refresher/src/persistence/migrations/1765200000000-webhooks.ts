import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Webhook endpoints (per tenant, secret encrypted like tokens) and their deliveries. A
 * delivery is derived from an outbox record in the transaction that marks the record
 * `webhooks_at`, so every committed change gets its deliveries even across a crash. Records
 * already in the outbox when this runs are marked, so an upgrade does not replay history.
 */
export class Webhooks1765200000000 implements MigrationInterface {
  name = 'Webhooks1765200000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE outbox ADD COLUMN webhooks_at timestamptz`);
    await queryRunner.query(`UPDATE outbox SET webhooks_at = now()`);
    await queryRunner.query(`CREATE INDEX outbox_webhooks_pending_idx ON outbox (id) WHERE webhooks_at IS NULL`);
    await queryRunner.query(`
      CREATE TABLE webhook_endpoints (
        tenant      text        NOT NULL,
        id          text        NOT NULL,
        url         text        NOT NULL,
        secret_enc  bytea       NOT NULL,
        events      text[]      NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, id)
      )`);
    await queryRunner.query(`
      CREATE TABLE webhook_deliveries (
        id              uuid        PRIMARY KEY,
        tenant          text        NOT NULL,
        endpoint_id     text        NOT NULL,
        connection      text        NOT NULL,
        outbox_id       bigint      NOT NULL,
        body            text        NOT NULL,
        state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'parked')),
        attempts        int         NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        leased_until    timestamptz,
        created_at      timestamptz NOT NULL DEFAULT now(),
        last_attempt_at timestamptz,
        last_status     int,
        last_error      text,
        UNIQUE (tenant, endpoint_id, outbox_id),
        FOREIGN KEY (tenant, endpoint_id) REFERENCES webhook_endpoints (tenant, id) ON DELETE CASCADE
      )`);
    await queryRunner.query(
      `CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (tenant, endpoint_id, connection, outbox_id)
       WHERE state = 'pending'`,
    );
    await queryRunner.query(
      `CREATE INDEX webhook_deliveries_latest_idx ON webhook_deliveries (tenant, endpoint_id, created_at DESC)`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE webhook_deliveries`);
    await queryRunner.query(`DROP TABLE webhook_endpoints`);
    await queryRunner.query(`ALTER TABLE outbox DROP COLUMN webhooks_at`);
  }
}
