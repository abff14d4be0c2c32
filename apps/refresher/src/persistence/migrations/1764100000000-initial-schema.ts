import type { MigrationInterface, QueryRunner } from 'typeorm';

export class InitialSchema1764100000000 implements MigrationInterface {
  name = 'InitialSchema1764100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE credentials (
        tenant             text        NOT NULL,
        connection         text        NOT NULL,
        provider           text        NOT NULL,
        shard_bucket       smallint    NOT NULL,
        status             text        NOT NULL CHECK (status IN ('active', 'failing', 'reauth_required', 'revoked')),
        version            integer     NOT NULL,
        token_type         text        NOT NULL DEFAULT 'Bearer',
        scope              text,
        access_token_enc   bytea,
        refresh_token_enc  bytea,
        key_id             text,
        issued_at          timestamptz,
        expires_at         timestamptz,
        next_refresh_at    timestamptz,
        last_refreshed_at  timestamptz,
        failures           integer     NOT NULL DEFAULT 0,
        last_error_code    text,
        last_error_message text,
        lease_id           uuid,
        lease_owner        text,
        lease_until        timestamptz,
        created_at         timestamptz NOT NULL DEFAULT now(),
        updated_at         timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, connection)
      )`);
    // Only credentials with work to do are in the due index, so its size follows the
    // active set and a claim reads due rows in order without touching the others.
    await queryRunner.query(
      `CREATE INDEX credentials_due_idx ON credentials (shard_bucket, next_refresh_at) WHERE next_refresh_at IS NOT NULL`,
    );
    await queryRunner.query(`CREATE INDEX credentials_status_idx ON credentials (tenant, status)`);
    await queryRunner.query(`
      CREATE TABLE outbox (
        id           bigserial   PRIMARY KEY,
        event_id     uuid        NOT NULL UNIQUE,
        tenant       text        NOT NULL,
        connection   text        NOT NULL,
        type         text        NOT NULL,
        subject      text        NOT NULL,
        payload      jsonb       NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
      )`);
    await queryRunner.query(`CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE outbox`);
    await queryRunner.query(`DROP TABLE credentials`);
  }
}
