import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';

/** The audit app's NATS connection, opened before Nest starts (the transport needs it). */
export const AUDIT_NATS_CONNECTION = Symbol('AUDIT_NATS_CONNECTION');

/**
 * Drains the connection last: it depends on nothing but the connection, so Nest shuts
 * it down after the consumer (which depends on more) has stored and acked its batch.
 */
@Injectable()
export class AuditNatsLifecycle implements OnApplicationShutdown {
  constructor(@Inject(AUDIT_NATS_CONNECTION) private readonly nc: NatsConnection) {}

  async onApplicationShutdown(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }
}
