import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { settleWithin, WakeableSleep } from '@tokenkeeper/common';
import { randomUUID } from 'node:crypto';
import { Counter, Gauge } from 'prom-client';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { type DueDelivery, WebhookRepository } from '../persistence/webhook.repository.js';
import { nextAttemptAt } from './webhook-backoff.js';
import { planDeliveries } from './webhook-body.js';
import { WebhookDeliveryClient } from './webhook-delivery.client.js';

/** The oldest-undelivered gauge queries the database at most this often, however often it is scraped. */
const GAUGE_TTL_MS = 5_000;

/**
 * The webhook loop. Each round turns new outbox records into deliveries (WebhookRepository.derive,
 * one transaction per batch), then sends the due ones: the head of each (endpoint, credential)
 * queue only, leased so that another replica does not send it at the same time. A delivery
 * is retried on the backoff schedule until the retry budget is spent, then parked. At least
 * once: a crash after the POST and before the result is stored sends it again after the lease,
 * with the same id, which receivers deduplicate on.
 */
@Injectable()
export class WebhookDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WebhookDispatcher.name);
  private readonly idle = new WakeableSleep();
  private readonly outcomes: Counter<'outcome'>;
  private running = false;
  private loop?: Promise<void>;
  private gaugeCache?: { at: number; value: Promise<number> };

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: WebhookRepository,
    private readonly client: WebhookDeliveryClient,
    metrics: RefreshMetrics,
  ) {
    this.outcomes = new Counter({
      name: 'tokenkeeper_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome: delivered (2xx), retried (any other answer or none), parked (retry budget spent)',
      labelNames: ['outcome'],
      registers: [metrics.registry],
    });
    for (const outcome of ['delivered', 'retried', 'parked']) this.outcomes.inc({ outcome }, 0);
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const dispatcher = this;
    new Gauge({
      name: 'tokenkeeper_webhook_oldest_undelivered_seconds',
      help: `Age of the oldest webhook delivery neither delivered nor parked (at most every ${GAUGE_TTL_MS / 1000} s)`,
      registers: [metrics.registry],
      async collect() {
        const age = await dispatcher.oldestPendingAge();
        if (age !== null) this.set(age);
      },
    });
  }

  onApplicationBootstrap(): void {
    this.running = true;
    this.loop = this.run();
  }

  async onApplicationShutdown(): Promise<void> {
    this.running = false;
    this.idle.wake();
    if (this.loop) await settleWithin(this.loop, this.config.webhooks.timeoutMs + 1_000);
  }

  private async run(): Promise<void> {
    while (this.running) {
      let busy = false;
      try {
        busy = (await this.round()) > 0;
      } catch (error) {
        if (!this.running) break;
        this.logger.warn({ msg: 'webhook round failed; trying again', error: (error as Error).message });
      }
      if (!busy && this.running) await this.idle.sleep(this.config.webhooks.intervalMs);
    }
  }

  /** One round; the number of records derived and deliveries attempted. */
  async round(): Promise<number> {
    const { batchSize, maxInFlight, timeoutMs } = this.config.webhooks;
    const derived = await this.repository.derive(batchSize, planDeliveries);
    // The lease outlives the attempt (its timeout) with room for storing the answer.
    const due = await this.repository.leaseDue(maxInFlight, timeoutMs * 3);
    await Promise.all(due.map((delivery) => this.attempt(delivery)));
    return derived + due.length;
  }

  private async attempt(delivery: DueDelivery): Promise<void> {
    const answer = await this.client.deliver({ url: delivery.url, secret: delivery.secret, body: delivery.body });
    const status = answer.status;
    const error = 'error' in answer ? answer.error : answer.ok ? null : `http_${answer.status}`;
    const audit = { provider: providerOf(delivery.body), replica: this.config.replicaId, eventId: randomUUID() };
    if (answer.ok) {
      await this.repository.settle(delivery, { state: 'delivered', status, error: null }, audit);
      this.outcomes.inc({ outcome: 'delivered' });
      return;
    }
    const now = new Date();
    const next = nextAttemptAt(delivery.createdAt, delivery.attempts + 1, now, this.config.webhooks.retryBudgetSeconds);
    if (next === null) {
      await this.repository.settle(delivery, { state: 'parked', status, error }, audit);
      this.outcomes.inc({ outcome: 'parked' });
      this.logger.warn({
        msg: 'webhook delivery parked after its retry budget',
        tenant: delivery.tenant,
        endpoint: delivery.endpointId,
        delivery: delivery.id,
        error,
      });
      return;
    }
    await this.repository.scheduleRetry(delivery.id, status, error, next.getTime() - now.getTime());
    this.outcomes.inc({ outcome: 'retried' });
  }

  private oldestPendingAge(): Promise<number | null> {
    const now = Date.now();
    if (!this.gaugeCache || now - this.gaugeCache.at > GAUGE_TTL_MS) {
      this.gaugeCache = { at: now, value: this.repository.oldestPendingAgeSeconds() };
    }
    return this.gaugeCache.value.catch(() => null);
  }
}

function providerOf(body: string): string {
  try {
    const provider = (JSON.parse(body) as { provider?: unknown }).provider;
    return typeof provider === 'string' && provider !== '' ? provider : 'unknown';
  } catch {
    return 'unknown';
  }
}
