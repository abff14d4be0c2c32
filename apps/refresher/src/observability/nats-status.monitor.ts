import { Inject, Injectable, Logger } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { NATS_CONNECTION } from '../nats/nats-connection.js';

/**
 * Follows the NATS connection's status events: whether it is connected right now (for
 * /readyz) and how often it reconnected (for /metrics). Starts listening when
 * constructed, that is right after the connection was established, so no event is missed.
 */
@Injectable()
export class NatsStatusMonitor {
  private readonly logger = new Logger('NatsStatus');
  private connected = true;
  private state = 'connected';
  private reconnectCount = 0;

  constructor(@Inject(NATS_CONNECTION) private readonly nc: NatsConnection) {
    void this.watch();
  }

  /** Connected, not reconnecting, not closed (draining counts as not ready too). */
  get isConnected(): boolean {
    return this.connected && !this.nc.isClosed() && !this.nc.isDraining();
  }

  /** `connected`, `disconnected`, `reconnecting`, `draining` or `closed`. */
  get status(): string {
    if (this.nc.isClosed()) return 'closed';
    if (this.nc.isDraining()) return 'draining';
    return this.state;
  }

  get reconnects(): number {
    return this.reconnectCount;
  }

  private async watch(): Promise<void> {
    try {
      for await (const status of this.nc.status()) {
        switch (status.type) {
          case 'disconnect':
            this.connected = false;
            this.state = 'disconnected';
            this.logger.warn({ msg: 'NATS connection lost; reconnecting', server: status.server });
            break;
          case 'reconnecting':
            this.connected = false;
            this.state = 'reconnecting';
            break;
          case 'reconnect':
            this.connected = true;
            this.state = 'connected';
            this.reconnectCount++;
            break;
          case 'close':
            this.connected = false;
            this.state = 'closed';
            break;
        }
      }
    } catch {
      // The iterator ends (or fails) when the connection closes.
    }
    this.connected = false;
    this.state = 'closed';
  }
}
