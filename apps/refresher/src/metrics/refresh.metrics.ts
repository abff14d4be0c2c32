import { Injectable } from '@nestjs/common';
import { Counter, Histogram, Registry } from 'prom-client';

/**
 * Prometheus series of the refresh engine and token.get. Labels are provider ids and
 * outcome names only: never a tenant, a connection or anything derived from a token.
 */
@Injectable()
export class RefreshMetrics {
  readonly registry = new Registry();
  private readonly refreshes = new Counter({
    name: 'tokenkeeper_refreshes_total',
    help: 'Refresh attempts by provider and outcome',
    labelNames: ['provider', 'outcome'],
    registers: [this.registry],
  });
  private readonly requestSeconds = new Histogram({
    name: 'tokenkeeper_refresh_request_seconds',
    help: 'Latency of token requests to providers',
    labelNames: ['provider'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly latenessSeconds = new Histogram({
    name: 'tokenkeeper_refresh_lateness_seconds',
    help: 'How long after its due time a refresh was committed',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly getSeconds = new Histogram({
    name: 'tokenkeeper_token_get_seconds',
    help: 'token.get latency by outcome (slow path only: cache hits are counted, not timed)',
    labelNames: ['outcome'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });
  private readonly rateLimited = new Counter({
    name: 'tokenkeeper_on_demand_rate_limited_total',
    help: "token.get answered rate_limited: an on-demand refresh over the credential's budget",
    labelNames: ['provider'],
    registers: [this.registry],
  });
  private readonly gets: Counter<'outcome'>;
  private cacheHits = 0;
  private cacheHitsReported = 0;
  private cacheHitsCounted = 0;

  constructor() {
    // prom-client calls collect() with `this` bound to the metric, so the owner needs a name.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const metrics = this;
    new Counter({
      name: 'tokenkeeper_token_get_cache_hits_total',
      help: 'token.get answered from memory',
      registers: [this.registry],
      collect() {
        this.inc(metrics.cacheHits - metrics.cacheHitsReported);
        metrics.cacheHitsReported = metrics.cacheHits;
      },
    });
    this.gets = new Counter({
      name: 'tokenkeeper_token_get_total',
      help: 'token.get requests by outcome: hit (answered from memory), ok (slow path) or error',
      labelNames: ['outcome'],
      registers: [this.registry],
      collect() {
        // Cache hits are folded in at scrape time, so the hot path stays a bare increment.
        this.inc({ outcome: 'hit' }, metrics.cacheHits - metrics.cacheHitsCounted);
        metrics.cacheHitsCounted = metrics.cacheHits;
      },
    });
    for (const outcome of ['hit', 'ok', 'error']) this.gets.inc({ outcome }, 0);
  }

  countRefresh(provider: string, outcome: string): void {
    this.refreshes.inc({ provider, outcome });
  }

  observeRequest(provider: string, seconds: number): void {
    this.requestSeconds.observe({ provider }, seconds);
  }

  countOnDemandRateLimited(provider: string): void {
    this.rateLimited.inc({ provider });
  }

  observeLateness(seconds: number): void {
    this.latenessSeconds.observe(Math.max(0, seconds));
  }

  observeGet(outcome: string, seconds: number): void {
    this.getSeconds.observe({ outcome }, seconds);
    this.gets.inc({ outcome });
  }

  /** The hot path only bumps a counter: a histogram observation would cost more than the lookup. */
  countCacheHit(): void {
    this.cacheHits++;
  }
}
