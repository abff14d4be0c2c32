import { Inject, Injectable } from '@nestjs/common';
import { ContractError, credentialId, type CredentialKey } from '@tokenkeeper/contracts';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Clock } from '../domain/clock.js';
import type { Credential } from '../domain/credential.js';
import { ReplyCache } from '../events/reply-cache.js';
import { CredentialRepository } from '../persistence/credential.repository.js';
import { RefreshService } from './refresh.service.js';
import type { OnDemandRefresher } from './refresher.ports.js';

/** How often a waiter re-reads the row in case the event it waits for was lost. */
const POLL_MS = 250;

export interface OnDemandResult {
  credential: Credential;
  /** The refresh we asked for (or joined) failed; `credential` is what is stored now. */
  failure?: { code: ContractError['code']; message: string };
}

/**
 * Refreshes on request (token.get, token.refresh) exactly once however many callers ask
 * at the same moment: in this process one promise per credential is shared, and across
 * replicas the database lease decides who refreshes while the others wait for the new
 * version (woken by the winner's event, or by polling if the event is lost).
 */
@Injectable()
export class RefreshCoordinator implements OnDemandRefresher {
  private readonly inFlight = new Map<string, Promise<OnDemandResult>>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: CredentialRepository,
    private readonly refresher: RefreshService,
    private readonly cache: ReplyCache,
    private readonly clock: Clock,
  ) {}

  /**
   * Makes sure a version newer than `staleVersion` exists, refreshing if no one else
   * already has. Without `staleVersion` (an admin's "refresh now"), refreshes whatever
   * version is stored.
   */
  refresh(key: CredentialKey, staleVersion?: number): Promise<OnDemandResult> {
    const id = credentialId(key);
    const running = this.inFlight.get(id);
    if (running) return running;
    const flight = this.run(key, staleVersion).finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, flight);
    return flight;
  }

  private async run(key: CredentialKey, staleVersion: number | undefined): Promise<OnDemandResult> {
    const deadline = this.clock.now() + this.config.refresh.leaseSeconds * 1000 + this.config.refresh.requestTimeoutMs;
    for (;;) {
      // At shutdown every lease is given back unused: answer at once, another replica takes over.
      if (this.refresher.isDraining) throw new ContractError('unavailable', 'this refresher is shutting down; retry');
      const leased = await this.repository.tryLease(
        key,
        this.config.replicaId,
        this.config.refresh.leaseSeconds,
        staleVersion,
      );
      if (leased) {
        const outcome = await this.refresher.refreshLeased(leased, { onDemand: true });
        if (outcome.kind === 'refreshed') return { credential: outcome.credential };
        if (outcome.kind === 'failed')
          return { credential: outcome.credential, failure: { code: outcome.code, message: outcome.message } };
        // Superseded: someone else's write stands; read it below.
      }
      const current = await this.repository.find(key);
      if (!current) throw new ContractError('not_found', `no credential ${key.tenant}/${key.connection}`);
      const moved = staleVersion === undefined ? leased !== null : current.version > staleVersion;
      if (moved || (current.status !== 'active' && current.status !== 'failing')) return { credential: current };
      if (staleVersion === undefined) staleVersion = current.version;
      if (this.clock.now() > deadline) {
        throw new ContractError('refresh_failed', 'timed out waiting for another replica to refresh the token');
      }
      // Another replica (or our own scheduler) holds the lease: wait for its result.
      const seen = await this.cache.waitForVersionAbove(credentialId(key), staleVersion, POLL_MS);
      if (seen === -1) {
        const after = await this.repository.find(key);
        if (after && after.version === staleVersion && after.lastError) {
          return { credential: after, failure: after.lastError };
        }
      }
    }
  }
}
