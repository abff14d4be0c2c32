import { Injectable } from '@nestjs/common';
import { Secret } from '@tokenkeeper/common';
import { auditSubject, type WebhookEventType, type WebhookListItem } from '@tokenkeeper/contracts';
import { DataSource, type EntityManager } from 'typeorm';
import { TokenCipher } from '../crypto/token-cipher.js';

/** Session-free lock that keeps derivation to one replica at a time, so per-credential order holds. */
export const DERIVE_LOCK_KEY = 7_388_311_512_002;

/** Binds an endpoint's encrypted secret to that endpoint: copied to another row, it fails to decrypt. */
const secretAad = (tenant: string, id: string) => `webhook-secret:${tenant}:${id}`;

export interface WebhookEndpoint {
  tenant: string;
  id: string;
  url: string;
  events: WebhookEventType[];
}

/** An outbox record not yet turned into deliveries. */
export interface OutboxRecordForWebhooks {
  id: string;
  tenant: string;
  connection: string;
  type: string;
  payload: Record<string, unknown>;
  /** The credential's metadata as stored when the deliveries are made; null without one (or no row yet). */
  metadata: Record<string, string> | null;
}

export interface NewDelivery {
  /** The body's `id`, the same on every retry. */
  id: string;
  endpointId: string;
  body: string;
}

/** A delivery leased for one attempt, with what it takes to send it. */
export interface DueDelivery {
  id: string;
  tenant: string;
  endpointId: string;
  connection: string;
  url: string;
  secret: Secret;
  body: string;
  attempts: number;
  createdAt: Date;
}

interface DueRow {
  id: string;
  tenant: string;
  endpoint_id: string;
  connection: string;
  url: string;
  secret_enc: Buffer;
  body: string;
  attempts: number;
  created_at: Date;
}

/** The webhook tables: endpoints, derivation from the outbox, and the delivery queue. */
@Injectable()
export class WebhookRepository {
  constructor(
    private readonly db: DataSource,
    private readonly cipher: TokenCipher,
  ) {}

  async setEndpoint(endpoint: WebhookEndpoint, secret: Secret): Promise<void> {
    await this.db.query(
      `INSERT INTO webhook_endpoints (tenant, id, url, secret_enc, events) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant, id) DO UPDATE SET url = EXCLUDED.url, secret_enc = EXCLUDED.secret_enc,
         events = EXCLUDED.events, updated_at = now()`,
      [
        endpoint.tenant,
        endpoint.id,
        endpoint.url,
        this.cipher.encrypt(secret, secretAad(endpoint.tenant, endpoint.id)),
        endpoint.events,
      ],
    );
  }

  /** True when the endpoint existed; its pending deliveries go with it. */
  async deleteEndpoint(tenant: string, id: string): Promise<boolean> {
    const [, count]: [unknown, number] = await this.db.query(
      `DELETE FROM webhook_endpoints WHERE tenant = $1 AND id = $2`,
      [tenant, id],
    );
    return count > 0;
  }

  async listEndpoints(tenant: string): Promise<WebhookListItem[]> {
    const rows: {
      id: string;
      url: string;
      events: WebhookEventType[];
      delivery_id: string | null;
      state: 'pending' | 'delivered' | 'parked' | null;
      attempts: number | null;
      last_status: number | null;
      last_error: string | null;
      at: Date | null;
    }[] = await this.db.query(
      `SELECT e.id, e.url, e.events, d.id AS delivery_id, d.state, d.attempts, d.last_status, d.last_error,
              coalesce(d.last_attempt_at, d.created_at) AS at
       FROM webhook_endpoints e
       LEFT JOIN LATERAL (SELECT * FROM webhook_deliveries d WHERE d.tenant = e.tenant AND d.endpoint_id = e.id
                          ORDER BY d.created_at DESC, d.outbox_id DESC LIMIT 1) d ON true
       WHERE e.tenant = $1 ORDER BY e.id`,
      [tenant],
    );
    return rows.map((r) => ({
      id: r.id,
      url: r.url,
      events: r.events,
      ...(r.delivery_id
        ? {
            lastDelivery: {
              deliveryId: r.delivery_id,
              state: r.state!,
              attempts: r.attempts!,
              ...(r.last_status !== null ? { status: r.last_status } : {}),
              ...(r.last_error !== null ? { error: r.last_error } : {}),
              at: new Date(r.at!).toISOString(),
            },
          }
        : {}),
    }));
  }

  /**
   * One derivation step in one transaction: claims up to `limit` records not yet processed,
   * lets `plan` say which deliveries each one makes (given the tenant's endpoints), inserts
   * them and marks the records processed. A crash anywhere leaves the records unmarked and
   * no deliveries, so the next step does it all again. Returns the number of records taken,
   * 0 also when another replica holds the step.
   */
  async derive(
    limit: number,
    plan: (record: OutboxRecordForWebhooks, endpoints: readonly WebhookEndpoint[]) => NewDelivery[],
  ): Promise<number> {
    return this.db.transaction(async (tx) => {
      const [{ locked }]: { locked: boolean }[] = await tx.query(
        `SELECT pg_try_advisory_xact_lock($1::bigint) AS locked`,
        [DERIVE_LOCK_KEY],
      );
      if (!locked) return 0;
      const records: OutboxRecordForWebhooks[] = await tx.query(
        // The metadata comes from the credential row, not the record: audit records are kept
        // to codes and names, and the receiver wants the caller's own labels with each change.
        `SELECT o.id, o.tenant, o.connection, o.type, o.payload, c.metadata FROM outbox o
         LEFT JOIN credentials c ON c.tenant = o.tenant AND c.connection = o.connection
         WHERE o.webhooks_at IS NULL ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED`,
        [limit],
      );
      if (records.length === 0) return 0;
      const endpoints = await this.endpointsOf(tx, [...new Set(records.map((r) => r.tenant))]);
      const rows: {
        id: string;
        tenant: string;
        endpoint_id: string;
        connection: string;
        outbox_id: string;
        body: string;
      }[] = [];
      for (const record of records) {
        for (const d of plan(record, endpoints.get(record.tenant) ?? [])) {
          rows.push({
            id: d.id,
            tenant: record.tenant,
            endpoint_id: d.endpointId,
            connection: record.connection,
            outbox_id: record.id,
            body: d.body,
          });
        }
      }
      if (rows.length > 0) {
        await tx.query(
          `INSERT INTO webhook_deliveries (id, tenant, endpoint_id, connection, outbox_id, body)
           SELECT r.id, r.tenant, r.endpoint_id, r.connection, r.outbox_id, r.body
           FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, tenant text, endpoint_id text, connection text, outbox_id bigint, body text)
           ON CONFLICT (tenant, endpoint_id, outbox_id) DO NOTHING`,
          [JSON.stringify(rows)],
        );
      }
      await tx.query(`UPDATE outbox SET webhooks_at = now() WHERE id = ANY($1::bigint[])`, [records.map((r) => r.id)]);
      return records.length;
    });
  }

  private async endpointsOf(tx: EntityManager, tenants: string[]): Promise<Map<string, WebhookEndpoint[]>> {
    const rows: WebhookEndpoint[] = await tx.query(
      `SELECT tenant, id, url, events FROM webhook_endpoints WHERE tenant = ANY($1::text[])`,
      [tenants],
    );
    const byTenant = new Map<string, WebhookEndpoint[]>();
    for (const row of rows) byTenant.set(row.tenant, [...(byTenant.get(row.tenant) ?? []), row]);
    return byTenant;
  }

  /**
   * Leases up to `limit` due deliveries for `leaseMs`, only the oldest pending one of each
   * (endpoint, credential): a later change waits until the earlier one is delivered or parked,
   * so a receiver sees one credential's changes in order, one at a time.
   */
  async leaseDue(limit: number, leaseMs: number): Promise<DueDelivery[]> {
    const [rows]: [DueRow[], number] = await this.db.query(
      `WITH due AS (
         SELECT d.id FROM webhook_deliveries d
         WHERE d.state = 'pending' AND d.next_attempt_at <= now()
           AND (d.leased_until IS NULL OR d.leased_until < now())
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.state = 'pending' AND p.tenant = d.tenant
                             AND p.endpoint_id = d.endpoint_id AND p.connection = d.connection AND p.outbox_id < d.outbox_id)
         ORDER BY d.outbox_id LIMIT $1 FOR UPDATE SKIP LOCKED
       )
       UPDATE webhook_deliveries w SET leased_until = now() + make_interval(secs => $2::float8 / 1000)
       FROM due, webhook_endpoints e
       WHERE w.id = due.id AND e.tenant = w.tenant AND e.id = w.endpoint_id
       RETURNING w.id, w.tenant, w.endpoint_id, w.connection, e.url, e.secret_enc, w.body, w.attempts, w.created_at`,
      [limit, leaseMs],
    );
    return rows.map((r) => ({
      id: r.id,
      tenant: r.tenant,
      endpointId: r.endpoint_id,
      connection: r.connection,
      url: r.url,
      secret: this.cipher.decrypt(r.secret_enc, secretAad(r.tenant, r.endpoint_id)),
      body: r.body,
      attempts: r.attempts,
      createdAt: new Date(r.created_at),
    }));
  }

  async scheduleRetry(id: string, status: number | null, error: string | null, delayMs: number): Promise<void> {
    await this.db.query(
      `UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = now(), last_status = $2,
         last_error = $3, leased_until = NULL, next_attempt_at = now() + make_interval(secs => $4::float8 / 1000)
       WHERE id = $1 AND state = 'pending'`,
      [id, status, error, delayMs],
    );
  }

  /**
   * Ends a delivery, delivered or parked, and writes its audit record in the same statement
   * (marked as derived, so a webhook record never makes a delivery of its own).
   */
  async settle(
    delivery: DueDelivery,
    outcome: { state: 'delivered' | 'parked'; status: number | null; error: string | null },
    audit: { provider: string; replica: string; eventId: string },
  ): Promise<void> {
    const type = outcome.state === 'delivered' ? 'webhook_delivered' : 'webhook_parked';
    const payload = {
      eventId: audit.eventId,
      type,
      tenant: delivery.tenant,
      connection: delivery.connection,
      provider: audit.provider,
      outcome: delivery.endpointId,
      ...(outcome.status !== null ? { code: `http_${outcome.status}` } : {}),
      message: `delivery ${delivery.id} ${outcome.state} after ${delivery.attempts + 1} attempt(s)`,
      at: new Date().toISOString(),
      replica: audit.replica,
    };
    await this.db.query(
      `WITH settled AS (
         UPDATE webhook_deliveries SET state = $7, attempts = attempts + 1, last_attempt_at = now(),
           last_status = $2, last_error = $3, leased_until = NULL
         WHERE id = $1 AND state = 'pending' RETURNING tenant, connection
       )
       INSERT INTO outbox (event_id, tenant, connection, type, subject, payload, webhooks_at)
       SELECT $4, s.tenant, s.connection, $8, $5,
              $6::jsonb || jsonb_build_object('version', coalesce((SELECT version FROM credentials c
                WHERE c.tenant = s.tenant AND c.connection = s.connection), 0)), now()
       FROM settled s`,
      [
        delivery.id,
        outcome.status,
        outcome.error,
        audit.eventId,
        auditSubject(type, delivery.tenant, delivery.connection),
        JSON.stringify(payload),
        outcome.state,
        type,
      ],
    );
  }

  /** Age in seconds of the oldest delivery neither delivered nor parked (0 when none). */
  async oldestPendingAgeSeconds(): Promise<number> {
    const [row]: { age: number | null }[] = await this.db.query(
      `SELECT extract(epoch FROM now() - min(created_at))::float8 AS age FROM webhook_deliveries WHERE state = 'pending'`,
    );
    return Number(row.age ?? 0);
  }
}
