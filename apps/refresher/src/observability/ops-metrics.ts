import { Injectable, Logger } from '@nestjs/common';
import { CREDENTIAL_STATUSES } from '@tokenkeeper/contracts';
import { withDeadline } from '@tokenkeeper/common';
import { collectDefaultMetrics, Counter, Gauge } from 'prom-client';
import { CredentialStatsRepository } from '../persistence/credential-stats.repository.js';
import { OutboxRepository } from '../persistence/outbox.repository.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { RefreshService } from '../refresh/refresh.service.js';
import { NatsStatusMonitor } from './nats-status.monitor.js';

/** Database-backed gauges are recomputed at most this often, however often Prometheus scrapes. */
export const DB_GAUGE_TTL_MS = 5_000;
/** A scrape never waits longer than this for the database; the last known values are kept. */
const DB_GAUGE_TIMEOUT_MS = 2_000;

/**
 * The series that are computed at scrape time, on the RefreshMetrics registry: credentials
 * by status and the outbox backlog (one cheap aggregate each, cached for a few seconds),
 * the NATS connection's state and reconnects, refreshes in flight, and Node's default
 * process metrics. Nothing here runs on the request or refresh paths. Labels are status
 * names only, never a tenant, a connection or a token.
 */
@Injectable()
export class OpsMetrics {
  private readonly logger = new Logger(OpsMetrics.name);
  private readonly cached = new Map<string, { at: number; value: Promise<unknown> }>();
  private reconnectsReported = 0;

  constructor(
    metrics: RefreshMetrics,
    credentials: CredentialStatsRepository,
    outbox: OutboxRepository,
    nats: NatsStatusMonitor,
    refresher: RefreshService,
  ) {
    const registry = metrics.registry;
    // prom-client calls collect() with `this` bound to the metric, so the owner needs a name.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const ops = this;
    collectDefaultMetrics({ register: registry });
    new Gauge({
      name: 'tokenkeeper_credentials',
      help: `Stored credentials by status (counted at scrape time, at most every ${DB_GAUGE_TTL_MS / 1000} s)`,
      labelNames: ['status'],
      registers: [registry],
      async collect() {
        const counts = await ops.cachedQuery('status', () => credentials.countByStatus());
        if (counts) for (const status of CREDENTIAL_STATUSES) this.set({ status }, counts.get(status) ?? 0);
      },
    });
    new Gauge({
      name: 'tokenkeeper_outbox_backlog',
      help: `Audit records committed to the outbox and not yet published to JetStream (at most every ${DB_GAUGE_TTL_MS / 1000} s)`,
      registers: [registry],
      async collect() {
        const pending = await ops.cachedQuery('outbox', () => outbox.backlog());
        if (pending !== null) this.set(pending);
      },
    });
    new Gauge({
      name: 'tokenkeeper_outbox_oldest_pending_seconds',
      help: `Age of the oldest audit record in the outbox not yet published to JetStream, 0 with none (at most every ${DB_GAUGE_TTL_MS / 1000} s)`,
      registers: [registry],
      async collect() {
        const age = await ops.cachedQuery('outbox-age', () => outbox.oldestPendingAgeSeconds());
        if (age !== null) this.set(age);
      },
    });
    new Counter({
      name: 'tokenkeeper_nats_reconnects_total',
      help: 'Times the NATS connection was re-established after a loss',
      registers: [registry],
      collect() {
        this.inc(nats.reconnects - ops.reconnectsReported);
        ops.reconnectsReported = nats.reconnects;
      },
    });
    new Gauge({
      name: 'tokenkeeper_nats_connected',
      help: '1 while the NATS connection is up, 0 while it is lost, reconnecting or closed',
      registers: [registry],
      collect() {
        this.set(nats.isConnected ? 1 : 0);
      },
    });
    new Gauge({
      name: 'tokenkeeper_refreshes_in_flight',
      help: 'Credentials leased by this replica and being refreshed right now',
      registers: [registry],
      collect() {
        this.set(refresher.activeCount);
      },
    });
  }

  /**
   * One aggregate query, shared by concurrent scrapes and reused for DB_GAUGE_TTL_MS.
   * Resolves to null when the database did not answer in time: the gauge keeps its last value.
   */
  private async cachedQuery<T>(name: string, fetch: () => Promise<T>): Promise<T | null> {
    const now = Date.now();
    let entry = this.cached.get(name) as { at: number; value: Promise<T> } | undefined;
    if (!entry || now - entry.at >= DB_GAUGE_TTL_MS) {
      entry = { at: now, value: withDeadline(fetch(), DB_GAUGE_TIMEOUT_MS) };
      this.cached.set(name, entry);
    }
    try {
      return await entry.value;
    } catch (error) {
      this.cached.delete(name);
      this.logger.debug({
        msg: 'metrics query failed; keeping the last values',
        gauge: name,
        error: (error as Error).message,
      });
      return null;
    }
  }
}
