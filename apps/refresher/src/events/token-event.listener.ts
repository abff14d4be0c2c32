import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { credentialId, parseTokenEvent, tokenEventFilter } from '@tokenkeeper/contracts';
import { Clock } from '../domain/clock.js';
import { NATS_CONNECTION } from '../nats/nats-connection.js';
import { ReplyCache } from './reply-cache.js';

/**
 * Keeps this replica's reply cache coherent with the others: every replica hears every
 * `token.*` event (no queue group) and applies it by version. Events are validated with
 * the contract's parser, the same one the client library uses: the subject names the
 * credential, and an event whose body names another one (or is malformed) is dropped, so
 * a publisher allowed on one credential's subjects cannot write another's cache entry.
 * After a reconnect the cache is dropped, since events published while we were away are
 * lost for us.
 */
@Injectable()
export class TokenEventListener implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(TokenEventListener.name);
  private subscription?: Subscription;

  constructor(
    @Inject(NATS_CONNECTION) private readonly nc: NatsConnection,
    private readonly cache: ReplyCache,
    private readonly clock: Clock,
  ) {}

  onApplicationBootstrap(): void {
    this.subscription = this.nc.subscribe(tokenEventFilter('*'), {
      callback: (err, msg) => {
        if (err) return;
        this.apply(msg.subject, msg.data);
      },
    });
    void this.watchReconnects();
  }

  async onApplicationShutdown(): Promise<void> {
    this.subscription?.unsubscribe();
  }

  /** Applies one event; exposed for tests. */
  apply(subject: string, data: Uint8Array): void {
    const event = parseTokenEvent(subject, data);
    if (event === null) {
      this.logger.warn({ msg: 'ignored a malformed token event (or one whose body names another credential)', subject: subject.slice(0, 300) });
      return;
    }
    switch (event.kind) {
      case 'refreshed':
      case 'registered': {
        const { view, expiresAtMs } = event.token;
        const issuedAtMs = Number.isNaN(event.refreshedAtMs) ? this.clock.now() : event.refreshedAtMs;
        this.cache.observe(credentialId(view), view, issuedAtMs, expiresAtMs);
        break;
      }
      case 'revoked':
        this.cache.evict(credentialId(event), event.version);
        break;
      case 'failed':
        this.cache.interrupt(credentialId(event));
        break;
    }
  }

  private async watchReconnects(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'reconnect') {
        this.cache.clear();
        this.logger.log({ msg: 'reconnected to NATS; token cache dropped', server: status.server });
      }
    }
  }
}
