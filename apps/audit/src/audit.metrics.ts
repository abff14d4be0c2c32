import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/**
 * The audit app's Prometheus registry, served on its monitoring port (AuditMonitoring):
 * the ingest lag, requests the reply-subject guard dropped (`tokenkeeper_rpc_dropped_total`)
 * and Node's default process metrics, as the refresher has them. No label names a tenant,
 * a connection or a record.
 */
export class AuditMetrics {
  readonly registry = new Registry();

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** How far behind the events the stored trail is: time from a record's `at` to its storing, of the last batch. */
  readonly ingestLag = new Gauge({
    name: 'tokenkeeper_audit_ingest_lag_seconds',
    help: 'Seconds from the newest record of the last stored batch happening to its being stored',
    registers: [this.registry],
  });
}
