import type { TokenView } from '@tokenkeeper/contracts';
import type { Credential } from '../domain/credential.js';
import type { FailureNotice } from './token-event.publisher.js';

/**
 * What the change notifier needs of the event publisher: one call per committed change.
 * TokenEventPublisher implements it on NATS, the unit tests' RecordingPublisher in a list.
 */
export interface TokenNotices {
  issued(kind: 'refreshed' | 'registered', token: TokenView, refreshedAt: Date, eventId: string): void;
  failed(credential: Credential, notice: FailureNotice, eventId: string): void;
  revoked(credential: Credential, eventId: string): void;
  recovered(credential: Credential, failedSince: Date, attempts: number, eventId: string): void;
  expiring(credential: Credential, refreshTokenExpiresAt: Date, eventId: string): void;
}
