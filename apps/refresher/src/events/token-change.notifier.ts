import { Injectable } from '@nestjs/common';
import { credentialId } from '@tokenkeeper/contracts';
import type { CommittedChange } from '../domain/committed-change.js';
import type { Credential } from '../domain/credential.js';
import { issuedAtMs } from '../domain/token-validity.js';
import { toTokenView } from '../domain/token-view.js';
import { ReplyCache } from './reply-cache.js';
import { TokenEventPublisher } from './token-event.publisher.js';

/**
 * The one path for what follows a commit: this replica's reply cache, then the core
 * `token.*` event (with the event id of the audit record committed alongside). Called
 * only with what the repository returned, so nothing is announced that the database
 * does not hold. The token view is built once per change, for the cache and the event.
 */
@Injectable()
export class TokenChangeNotifier {
  constructor(
    private readonly cache: ReplyCache,
    private readonly publisher: TokenEventPublisher,
  ) {}

  committed(change: CommittedChange): void {
    const { credential, eventId } = change;
    const id = credentialId(credential);
    switch (change.kind) {
      case 'registered':
      case 'refreshed': {
        if (!credential.accessToken) {
          // No token yet: whatever is cached belongs to the grant this registration replaced.
          this.cache.evict(id, credential.version);
          return;
        }
        const view = toTokenView(credential);
        this.cache.put(view, issuedAtMs(credential));
        this.publisher.issued(change.kind, view, credential.lastRefreshedAt ?? credential.updatedAt, eventId);
        return;
      }
      case 'failed':
        // Wakes this replica's callers waiting for the refresh; their retry reads the row.
        this.cache.interrupt(id);
        this.publisher.failed(
          credential,
          {
            code: credential.lastError?.code ?? 'refresh_failed',
            message: credential.lastError?.message ?? '',
            attempt: credential.failures,
            retryAt: credential.nextRefreshAt,
          },
          eventId,
        );
        return;
      case 'revoked':
        this.cache.evict(id, credential.version);
        this.publisher.revoked(credential, eventId);
        return;
    }
  }

  /** After the refreshed change that ended a run of failures: its `recovered` record commits with it. */
  recovered(credential: Credential, failedSince: Date, attempts: number, eventId: string): void {
    this.publisher.recovered(credential, failedSince, attempts, eventId);
  }

  /** After the commit that recorded the warning of this refresh-token expiry (`expiring` record). */
  expiring(credential: Credential, refreshTokenExpiresAt: Date, eventId: string): void {
    this.publisher.expiring(credential, refreshTokenExpiresAt, eventId);
  }
}
