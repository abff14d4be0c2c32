import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  encodeJson,
  EventSigner,
  tokenEventSubject,
  type TokenExpiringEvent,
  type TokenFailedEvent,
  type TokenRecoveredEvent,
  type TokenRefreshedEvent,
  type TokenRevokedEvent,
  type TokenView,
} from '@tokenkeeper/contracts';
import { Clock } from '../domain/clock.js';
import type { Credential } from '../domain/credential.js';
import { NATS_CONNECTION } from '../nats/nats-connection.js';
import { fixedHeaders } from '@tokenkeeper/nats';
import { OwnEvents } from './own-events.js';
import type { TokenNotices } from './token-notices.port.js';

export interface FailureNotice {
  code: string;
  message: string;
  attempt: number;
  retryAt: Date | null;
}

/**
 * Publishes the core `token.*` events. Called only after the change is committed, so a
 * consumer can never see a token that the database does not hold. Core NATS is
 * at-most-once: a consumer that misses an event still gets the token from `token.get`,
 * and the durable record of every change goes through the outbox to JetStream.
 * Every event is signed once, over its subject, its signing time and its exact bytes, so
 * that readers holding the trusted keys (other replicas, the client) can tell it from a
 * forgery, and from a genuine event re-published on another subject or replayed later.
 */
@Injectable()
export class TokenEventPublisher implements TokenNotices {
  private readonly logger = new Logger(TokenEventPublisher.name);

  constructor(
    @Inject(NATS_CONNECTION) private readonly nc: NatsConnection,
    private readonly signer: EventSigner,
    private readonly clock: Clock,
    @Optional() private readonly own?: OwnEvents,
  ) {}

  /** `token`: the view the reply cache holds too, built once per committed version. */
  issued(kind: 'refreshed' | 'registered', token: TokenView, refreshedAt: Date, eventId: string): void {
    const event: TokenRefreshedEvent = { eventId, ...token, refreshedAt: refreshedAt.toISOString() };
    this.publish(tokenEventSubject(kind, token.tenant, token.connection), event);
  }

  failed(credential: Credential, notice: FailureNotice, eventId: string): void {
    const event: TokenFailedEvent = {
      eventId,
      tenant: credential.tenant,
      connection: credential.connection,
      provider: credential.provider,
      code: notice.code,
      message: notice.message,
      attempt: notice.attempt,
      status: credential.status,
      version: credential.version,
    };
    if (notice.retryAt) event.retryAt = notice.retryAt.toISOString();
    this.publish(tokenEventSubject('failed', credential.tenant, credential.connection), event);
  }

  revoked(credential: Credential, eventId: string): void {
    const event: TokenRevokedEvent = {
      eventId,
      tenant: credential.tenant,
      connection: credential.connection,
      provider: credential.provider,
      version: credential.version,
    };
    this.publish(tokenEventSubject('revoked', credential.tenant, credential.connection), event);
  }

  recovered(credential: Credential, failedSince: Date, attempts: number, eventId: string): void {
    const event: TokenRecoveredEvent = {
      eventId,
      tenant: credential.tenant,
      connection: credential.connection,
      provider: credential.provider,
      version: credential.version,
      failedSince: failedSince.toISOString(),
      attempts,
    };
    this.publish(tokenEventSubject('recovered', credential.tenant, credential.connection), event);
  }

  expiring(credential: Credential, refreshTokenExpiresAt: Date, eventId: string): void {
    const event: TokenExpiringEvent = {
      eventId,
      tenant: credential.tenant,
      connection: credential.connection,
      provider: credential.provider,
      version: credential.version,
      refreshTokenExpiresAt: refreshTokenExpiresAt.toISOString(),
    };
    this.publish(tokenEventSubject('expiring', credential.tenant, credential.connection), event);
  }

  private publish(subject: string, event: object): void {
    try {
      const data = encodeJson(event);
      const signed = this.signer.headersFor(subject, data, this.clock.now());
      // Before the publish: our own subscription may hear it back (TokenEventListener).
      this.own?.remember(signed, subject, data);
      this.nc.publish(subject, data, { headers: fixedHeaders(signed) });
    } catch (error) {
      // A closed connection (shutdown) must not undo a committed refresh.
      this.logger.warn({ msg: 'could not publish event', subject, error: (error as Error).message });
    }
  }
}
