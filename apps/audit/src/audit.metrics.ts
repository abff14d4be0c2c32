import { Registry } from 'prom-client';

/**
 * The audit app's Prometheus registry. It has no HTTP endpoint yet; the series are there
 * for an embedding process (and the tests) to read, e.g. requests the reply-subject guard
 * dropped (`tokenkeeper_rpc_dropped_total`).
 */
export class AuditMetrics {
  readonly registry = new Registry();
}
