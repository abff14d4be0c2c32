import type { ServerResponse } from 'node:http';
import { Controller, Get, Res } from '@nestjs/common';
import { sendMetrics, sendPlain as send } from '@tokenkeeper/common';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { ReadinessService } from './readiness.service.js';

/**
 * The HTTP side of the refresher (HTTP_PORT): liveness, readiness and Prometheus metrics.
 *
 * Hand-written rather than @nestjs/terminus (which supports Nest 12): the NATS check has
 * to look at the connection this app already holds (terminus' microservice indicator
 * opens a connection of its own through the classic `nats` client), and terminus logs
 * every failed probe at error level, which is noise for an orchestrator probing every
 * few seconds. What is left is three small handlers.
 *
 * Responses are written on the raw response, so they bypass Nest's exception filters
 * (the global one is the RPC pass-through filter).
 */
@Controller()
export class HealthController {
  constructor(
    private readonly readiness: ReadinessService,
    private readonly metrics: RefreshMetrics,
  ) {}

  /** Liveness: the process and its event loop are alive. Never touches a dependency. */
  @Get('healthz')
  healthz(@Res() res: ServerResponse): void {
    send(res, 200, 'application/json; charset=utf-8', JSON.stringify({ status: 'ok' }));
  }

  /** Readiness: 200 when PostgreSQL, NATS and the migrations are fine, else 503 naming what is down. */
  @Get('readyz')
  async readyz(@Res() res: ServerResponse): Promise<void> {
    const report = await this.readiness.check();
    send(res, report.status === 'ok' ? 200 : 503, 'application/json; charset=utf-8', JSON.stringify(report));
  }

  /** Prometheus text exposition of the refresher's registry (refresh engine, token.get, ops, process). */
  @Get('metrics')
  async scrape(@Res() res: ServerResponse): Promise<void> {
    await sendMetrics(res, this.metrics.registry);
  }
}
