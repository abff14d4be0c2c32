import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { credentialId, parseTokenEventSubject, tokenEventFilter, type TokenView } from '@tokenkeeper/contracts';
import { TokenCache } from '../tokens/token-cache.js';
import { NATS_CONNECTION } from './nats-connection.js';

/**
 * Keeps this replica's token cache coherent with the others: every replica hears every
 * `token.*` event (no queue group) and applies it by version. After a reconnect the
 * cache is dropped, since events published while we were away are lost for us.
 */
@Injectable()
export class TokenEventListener implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(TokenEventListener.name);
  private subscription?: Subscription;

  constructor(
    @Inject(NATS_CONNECTION) private readonly nc: NatsConnection,
    private readonly cache: TokenCache,
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

  private apply(subject: string, data: Uint8Array): void {
    const parsed = parseTokenEventSubject(subject);
    if (!parsed) return;
    let event: Partial<TokenView> & { version?: unknown; status?: unknown };
    try {
      event = JSON.parse(Buffer.from(data).toString('utf8'));
    } catch {
      this.logger.warn({ msg: 'ignored a malformed event', subject });
      return;
    }
    if (typeof event.version !== 'number') return;
    const id = credentialId(parsed);
    switch (parsed.kind) {
      case 'refreshed':
      case 'registered':
        if (typeof event.accessToken === 'string') {
          this.cache.observe(event as TokenView, Date.parse(String((event as { refreshedAt?: unknown }).refreshedAt)) || Date.now());
        }
        break;
      case 'revoked':
        this.cache.evict(id, event.version);
        break;
      case 'failed':
        this.cache.interrupt(id);
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
