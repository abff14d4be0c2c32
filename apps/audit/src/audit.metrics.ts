import { Gauge, Registry } from 'prom-client';

/**
 * The audit app's Prometheus registry. It has no HTTP endpoint yet; the series are there
 * for an embedding process (and the tests) to read, e.g. requests the reply-subject guard
 * dropped (`tokenkeeper_rpc_dropped_total`).
 */
export class AuditMetrics {
  readonly registry = new Registry();
  /** How far behind the events the stored trail is: time from a record's `at` to its storing, of the last batch. */
  readonly ingestLag = new Gauge({
    name: 'tokenkeeper_audit_ingest_lag_seconds',
    help: 'Seconds from the newest record of the last stored batch happening to its being stored',
    registers: [this.registry],
  });
}
