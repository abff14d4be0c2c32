import { type BeforeApplicationShutdown, Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { MonitoringServer } from '@tokenkeeper/common';
import { AuditMetrics } from '../audit.metrics.js';
import { AUDIT_CONFIG, type AuditConfig } from '../config/audit-config.js';

/**
 * `/healthz` and `/metrics` of the audit app on AUDIT_MONITORING_HOST:PORT, so that
 * Prometheus scrapes the ingest lag its alert watches. Opened once the app is up and
 * closed first at shutdown, before the consumer drains: a scrape during the drain would
 * only see a process on its way out.
 */
@Injectable()
export class AuditMonitoring implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private server?: MonitoringServer;

  constructor(
    @Inject(AUDIT_CONFIG) private readonly config: AuditConfig,
    private readonly metrics: AuditMetrics,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.server = await MonitoringServer.listen({ ...this.config.monitoring, registry: this.metrics.registry });
  }

  /** `host:port` as bound (the port is a free one when configured as 0). */
  get address(): string {
    return `${this.config.monitoring.host}:${this.server?.port ?? this.config.monitoring.port}`;
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.server?.close();
    this.server = undefined;
  }
}
