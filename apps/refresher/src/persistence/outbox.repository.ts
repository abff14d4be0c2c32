import { Inject, Injectable } from '@nestjs/common';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';

/**
 * Session advisory lock that makes one replica the active relay. Advisory locks are
 * per database, so deployments in different databases do not see each other.
 */
export const OUTBOX_RELAY_LOCK_KEY = 7_388_311_512_001;

/** A committed audit record not yet acknowledged by JetStream. */
export interface OutboxRow {
  id: string;
  event_id: string;
  /** The record's `Nats-Msg-Id` and audit key: random, never on a core event. */
  record_id: string;
  tenant: string;
  connection: string;
  subject: string;
  payload: Record<string, unknown>;
}

/**
 * The outbox's SQL, read side (rows are written by CredentialRepository, in the statement
 * of the change they describe). Counting goes through the pool; everything the relay
 * does goes through an OutboxRelaySession, its own connection, because the relay lock is
 * a session lock: whoever marks rows must hold it on that very session.
 */
@Injectable()
export class OutboxRepository {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly db: DataSource,
  ) {}

  /** Records committed but not yet acknowledged by JetStream (the outbox backlog metric). */
  async backlog(): Promise<number> {
    if (!this.db.isInitialized) throw new Error('connection pool closed');
    const rows: { n: number }[] = await this.db.query(
      `SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL`,
    );
    return Number(rows[0].n);
  }

  /** Seconds since the oldest record still waiting for JetStream was committed; 0 with none waiting. */
  async oldestPendingAgeSeconds(): Promise<number> {
    if (!this.db.isInitialized) throw new Error('connection pool closed');
    const rows: { age: number | null }[] = await this.db.query(
      `SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS age FROM outbox WHERE published_at IS NULL`,
    );
    return Math.max(0, Number(rows[0].age ?? 0));
  }

  /**
   * Opens the relay's dedicated connection. `onLost` is called once should the
   * connection fail later; the session is closed by then, and with it the lock.
   */
  async openRelaySession(onLost: (error: Error) => void): Promise<OutboxRelaySession> {
    const { database, replicaId } = this.config;
    const client = new pg.Client({
      connectionString: database.url,
      application_name: `tokenkeeper-outbox-relay ${replicaId}`.slice(0, 63),
      keepAlive: true,
      connectionTimeoutMillis: 5_000,
      query_timeout: 30_000,
    });
    const session = new OutboxRelaySession(client);
    client.on('error', (error) => {
      client.end().catch(() => undefined);
      onLost(error);
    });
    try {
      await client.connect();
      // Should this process vanish without closing the socket (host lost, network cut), the
      // server still ends the idle session, and so frees the lock, after this timeout. The
      // relay and its standbys query far more often than that while alive.
      const { standbyPollMs, backoffMaxMs } = this.config.audit.relay;
      const idleMs = Math.max(30_000, 3 * Math.max(standbyPollMs, backoffMaxMs));
      await client.query(`SET idle_session_timeout = ${idleMs}`).catch(() => undefined); // PostgreSQL < 14: no such setting
    } catch (error) {
      client.end().catch(() => undefined);
      throw error;
    }
    return session;
  }
}

/** One relay connection: the lock, and the reads and writes made under it. */
export class OutboxRelaySession {
  constructor(private readonly client: pg.Client) {}

  /** Takes the relay lock if free; true when this session holds it. */
  async tryLead(): Promise<boolean> {
    const { rows } = await this.client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [
      OUTBOX_RELAY_LOCK_KEY,
    ]);
    return rows[0].locked;
  }

  /** Pending rows in id order, which is commit order per credential. */
  async readPending(limit: number): Promise<OutboxRow[]> {
    const { rows } = await this.client.query<OutboxRow>(
      `SELECT id, event_id, record_id, tenant, connection, subject, payload FROM outbox
       WHERE published_at IS NULL ORDER BY id LIMIT $1`,
      [limit],
    );
    return rows;
  }

  async markPublished(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.client.query(
      `UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[]) AND published_at IS NULL`,
      [ids],
    );
  }

  /**
   * Deletes published rows older than `retentionHours`, never one whose webhook deliveries
   * have not been derived yet. It looks at the oldest ids only
   * (primary key order follows time), so a table full of recent rows costs one short
   * index scan.
   */
  async purgePublished(retentionHours: number): Promise<void> {
    await this.client.query(
      `DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 10000)
         AND published_at IS NOT NULL AND published_at < now() - make_interval(hours => $1)
         AND webhooks_at IS NOT NULL`,
      [retentionHours],
    );
  }

  /** Ends the session, which releases the lock; safe to call more than once. */
  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}
