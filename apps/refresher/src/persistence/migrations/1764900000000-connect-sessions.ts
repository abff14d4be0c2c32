import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The connect flow's sessions. The URL's session id and the OAuth `state` are
 * bearer secrets, so only their SHA-256 is stored: a reader of this table cannot open a
 * session or answer a callback. The PKCE verifier is encrypted like tokens (AES-256-GCM,
 * bound to the session). The browser that pressed the page's button is known by the hash of
 * the value its cookie holds, so the callback accepts that browser only. Rows are short-lived and looked up by hash, not by tenant: in a
 * Citus layout this small table stays local to the coordinator (docs/design.md).
 */
export class ConnectSessions1764900000000 implements MigrationInterface {
  name = 'ConnectSessions1764900000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE connect_sessions (
        session_hash  bytea       PRIMARY KEY,
        tenant        text        NOT NULL,
        connection    text        NOT NULL,
        provider      text        NOT NULL,
        scopes        text[]      NOT NULL,
        return_url    text,
        metadata      jsonb       NOT NULL DEFAULT '{}',
        status        text        NOT NULL CHECK (status IN ('created', 'redirected', 'completing', 'connected', 'failed')),
        state_hash    bytea       UNIQUE,
        verifier_enc  bytea,
        browser_hash  bytea,
        created_at    timestamptz NOT NULL,
        expires_at    timestamptz NOT NULL,
        redirected_at timestamptz,
        finished_at   timestamptz
      )`);
    await queryRunner.query(`CREATE INDEX connect_sessions_tenant_idx ON connect_sessions (tenant, connection)`);
    await queryRunner.query(`CREATE INDEX connect_sessions_expiry_idx ON connect_sessions (expires_at)`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE connect_sessions`);
  }
}
