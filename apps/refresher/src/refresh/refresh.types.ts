import type { Logger } from '@nestjs/common';
import type { ErrorCode } from '@tokenkeeper/contracts';
import type { AppConfig } from '../config/app-config.js';
import type { Clock } from '../domain/clock.js';
import type { CommittedChange } from '../domain/committed-change.js';
import type { Credential } from '../domain/credential.js';
import type { TokenChangeNotifier } from '../events/token-change.notifier.js';
import type { RefreshMetrics } from '../metrics/refresh.metrics.js';
import type { CredentialRepository } from '../persistence/credential.repository.js';

export type RefreshOutcome =
  | { kind: 'refreshed'; credential: Credential }
  | { kind: 'failed'; credential: Credential; code: ErrorCode; message: string }
  /** Our lease was taken over or the version moved: someone else's write stands. */
  | { kind: 'superseded' };

/** How the commit of an issued token ended (RotatedCommitRetrier.commitRotated). */
export type RotatedCommitResult =
  /** Our write landed and we have its answer: announce it. */
  | { kind: 'committed'; change: CommittedChange }
  /** Our write landed but its answer was lost (the connection died): the row holds it, unannounced. */
  | { kind: 'landed' }
  /** Our write does not stand: a newer version of someone else's, a removed or parked row, or shutdown. */
  | { kind: 'discarded' };

/**
 * What RefreshService shares with the steps it delegates to. One logger for all of them, so
 * that their lines keep the RefreshService context operators filter on.
 */
export interface RefreshDeps {
  readonly config: AppConfig;
  readonly repository: CredentialRepository;
  readonly notifier: TokenChangeNotifier;
  readonly clock: Clock;
  readonly metrics: RefreshMetrics;
  readonly logger: Logger;
}
