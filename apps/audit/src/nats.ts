import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { drainBounded } from '@tokenkeeper/nats';

/** The audit app's NATS connection, opened before Nest starts (the transport needs it). */
export const AUDIT_NATS_CONNECTION = Symbol('AUDIT_NATS_CONNECTION');

/**
 * Drains the connection last: it depends on nothing but the connection, so Nest shuts
 * it down after the consumer (which depends on more) has stored and acked its batch.
 * Bounded, like the refresher's: while disconnected a drain would wait forever.
 */
@Injectable()
export class AuditNatsLifecycle implements OnApplicationShutdown {
  constructor(@Inject(AUDIT_NATS_CONNECTION) private readonly nc: NatsConnection) {}

  async onApplicationShutdown(): Promise<void> {
    await drainBounded(this.nc);
  }
}
