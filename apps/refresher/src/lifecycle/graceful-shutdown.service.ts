import { type BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { settleWithin } from '@tokenkeeper/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { ReadinessService } from '../observability/readiness.service.js';
import { RefreshScheduler } from '../refresh/refresh.scheduler.js';
import { RefreshService } from '../refresh/refresh.service.js';

/** How long closing the request-reply subscriptions may take before we move on. */
const REQUEST_SERVER_CLOSE_MS = 2_000;

/**
 * Graceful shutdown (SIGTERM/SIGINT through `enableShutdownHooks`, or `app.close()`).
 *
 * Nest 12 closes an application in this order (NestApplicationContext.runShutdownSequence):
 *   1. onModuleDestroy hooks;
 *   2. beforeApplicationShutdown hooks;
 *   3. dispose(): the HTTP server closes, then the connected microservices (our NATS
 *      request-reply server) are closed;
 *   4. onApplicationShutdown hooks, module by module from the root module outwards (the
 *      RefresherModule before TypeOrmCoreModule), and inside a module from the most
 *      dependent provider to the least;
 *   5. with `useProcessExit` (main.ts), process.exit(0).
 *
 * The refresher needs: stop taking work, finish the refreshes in flight, give back what
 * could not finish, publish, drain NATS, close the pool. So all the work-stopping happens
 * here, in step 2, while NATS and PostgreSQL are certainly still open:
 *   a. /readyz turns 503 ("shutdown"), so orchestrators stop routing here;
 *   b. the NATS request-reply subscriptions are drained (replicas in the queue group take
 *      new requests; requests already received still get their replies);
 *   c. the scheduler stops claiming and its claim in progress completes;
 *   d. RefreshService.drain: queued token requests are not started and their leases are
 *      given back at once; requests in flight get SHUTDOWN_GRACE_MS to finish and commit;
 *      the rest are cancelled, and their leases expire on their own (at most
 *      LEASE_SECONDS): the provider may still process a cancelled request, so no other
 *      replica may present that refresh token yet (on-demand refreshes answer
 *      `unavailable` meanwhile). With the defaults the grace outlasts REFRESH_TIMEOUT_MS.
 * Then in step 3 the HTTP server closes, and in step 4 the outbox relay publishes what
 * the finished refreshes committed (OutboxRelay), the NATS connection is drained, with a
 * bound (NatsLifecycle, in refresher.module.ts), and last TypeORM destroys the pool.
 */
@Injectable()
export class GracefulShutdown implements BeforeApplicationShutdown {
  private readonly logger = new Logger(GracefulShutdown.name);
  private readonly requestServers: (() => Promise<void>)[] = [];

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly readiness: ReadinessService,
    private readonly scheduler: RefreshScheduler,
    private readonly refresher: RefreshService,
  ) {}

  /** refresher.app.ts registers the NATS request-reply server here, so that it stops first (step b). */
  stopRequestsWith(close: () => Promise<void>): void {
    this.requestServers.push(close);
  }

  async beforeApplicationShutdown(signal?: string): Promise<void> {
    const started = performance.now();
    this.logger.log({
      msg: 'shutting down: no new work; waiting for refreshes in flight',
      signal,
      inFlight: this.refresher.activeCount,
      graceMs: this.config.shutdownGraceMs,
    });
    this.readiness.markStopping();
    // Bounded: unsubscribing waits for the server, which may be the thing that is gone.
    await settleWithin(
      this.requestServers.map((close) => close()),
      REQUEST_SERVER_CLOSE_MS,
    );
    await this.scheduler.stop();
    const drained = await this.refresher.drain(this.config.shutdownGraceMs);
    this.logger.log({ msg: 'refresh work drained', ...drained, ms: Math.round(performance.now() - started) });
  }
}
