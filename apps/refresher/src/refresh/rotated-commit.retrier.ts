import { sleep } from '@tokenkeeper/common';
import { credentialId } from '@tokenkeeper/contracts';
import type { Credential, Lease } from '../domain/credential.js';
import { isLive } from '../domain/token-validity.js';
import type { PendingAuditRecord } from '../persistence/audit-record.js';
import type { TokenWrite } from '../persistence/credential.repository.js';
import type { LeaseKeeper } from './lease-keeper.js';
import type { RefreshDeps, RefreshOutcome, RotatedCommitResult } from './refresh.types.js';

/** A failed commit of a rotated token is retried this often at first, backing off to the max. */
const COMMIT_RETRY_FIRST_MS = 100;
const COMMIT_RETRY_MAX_MS = 2_000;

/** One commit attempt: a result, or the lease was taken again (retry now), someone holds it, or the database failed. */
type Attempt = RotatedCommitResult | { kind: 'leased-again' } | { kind: 'held' } | { kind: 'failed'; error: unknown };

type Where = { tenant: string; connection: string; provider: string };

const DISCARDED: RotatedCommitResult = { kind: 'discarded' };

function isFinal(attempt: Attempt): attempt is RotatedCommitResult {
  return attempt.kind === 'committed' || attempt.kind === 'landed' || attempt.kind === 'discarded';
}

/**
 * The fenced commit of a token the provider has issued, retried until it lands or a newer
 * version is found: the new refresh token exists only in this process, and the provider has
 * already retired the old one. Holds the commits still waiting, so that a new lease this
 * process takes on one of their credentials serves the commit instead of a second request.
 */
export class RotatedCommitRetrier {
  /** Rotated tokens whose commit has not landed yet, by credential: a new lease on one is handed to it. */
  private readonly pending = new Map<string, { keeper: LeaseKeeper; done: Promise<RefreshOutcome> }>();

  constructor(
    private readonly deps: RefreshDeps,
    /** Aborted when the shutdown grace period is over: a commit still retrying then gives up. */
    private readonly cancelled: AbortSignal,
  ) {}

  /**
   * Our own lease lapsed while a rotated token waited for its commit, and this process
   * claimed the credential again: the new lease serves that commit, no request is made.
   * Undefined when no commit waits for this credential.
   */
  join(credential: Credential, lease: Lease, untilMs: number): Promise<RefreshOutcome> | undefined {
    const waiting = this.pending.get(credentialId(credential));
    if (!waiting) return undefined;
    waiting.keeper.adopt(lease, untilMs);
    return waiting.done;
  }

  /**
   * Database errors (restart, failover, a dropped connection, a statement timeout) are
   * retried with backoff while the keeper extends the lease; a fence that no longer holds is
   * examined: a newer version stands (ours, if its refresh token is ours), or the lease
   * lapsed and nobody took it, and it is taken again. Ends only at shutdown, loudly.
   */
  async commitRotated(
    credential: Credential,
    keeper: LeaseKeeper,
    write: TokenWrite,
    audit: PendingAuditRecord[],
  ): Promise<RotatedCommitResult> {
    const id = credentialId(credential);
    let resolve!: (outcome: RefreshOutcome) => void;
    const outcome = new Promise<RefreshOutcome>((r) => (resolve = r));
    let delay = COMMIT_RETRY_FIRST_MS;
    let failures = 0;
    const where = { tenant: credential.tenant, connection: credential.connection, provider: credential.provider };
    try {
      for (;;) {
        const attempt = await this.attempt(credential, keeper, write, audit, where);
        if (isFinal(attempt)) return attempt;
        if (attempt.kind === 'leased-again') continue;
        // Someone holds the lease: this process (a new claim is handed to us, see join) or
        // another replica, whose write or failure we will see. Or the database failed.
        if (failures === 0) this.pending.set(id, { keeper, done: outcome });
        if (attempt.kind === 'failed') this.complain(attempt.error, failures, keeper, where);
        failures++;
        if (this.cancelled.aborted) {
          this.deps.logger.error({
            msg: 'ROTATED REFRESH TOKEN LOST: shutting down before its commit could land; the credential may need re-authorization',
            ...where,
          });
          return DISCARDED;
        }
        await this.pause(delay, keeper);
        delay = Math.min(COMMIT_RETRY_MAX_MS, delay * 2);
      }
    } finally {
      if (this.pending.get(id)?.keeper === keeper) this.pending.delete(id);
      // Whoever joined this commit through a new lease hears how it ended.
      void outcome;
      resolve({ kind: 'superseded' });
    }
  }

  /** One fenced commit; when the fence did not hold, what the row says now. */
  private async attempt(
    credential: Credential,
    keeper: LeaseKeeper,
    write: TokenWrite,
    audit: PendingAuditRecord[],
    where: Where,
  ): Promise<Attempt> {
    try {
      const committed = await this.withinLease(
        this.deps.repository.commitRefresh(credential, keeper.lease, write, audit),
        keeper,
      );
      if (committed) return { kind: 'committed', change: committed };
      return await this.examineFence(credential, keeper, write, where);
    } catch (error) {
      return { kind: 'failed', error };
    }
  }

  /** The fence did not hold: a newer version stands, the row is gone or parked, or the lease is taken again. */
  private async examineFence(
    credential: Credential,
    keeper: LeaseKeeper,
    write: TokenWrite,
    where: Where,
  ): Promise<Attempt> {
    const { repository, config, logger } = this.deps;
    const now = await repository.find(credential);
    if (!now) return DISCARDED;
    if (now.version > keeper.lease.version) {
      return write.refreshToken && now.refreshToken?.equals(write.refreshToken) ? { kind: 'landed' } : DISCARDED;
    }
    if (!isLive(now)) {
      logger.error({
        msg: 'ROTATED REFRESH TOKEN NOT STORED: the credential left the live states meanwhile',
        ...where,
        status: now.status,
      });
      return DISCARDED;
    }
    const again = await repository.tryLease(
      credential,
      config.replicaId,
      config.refresh.leaseSeconds,
      keeper.lease.version,
    );
    if (!again) return { kind: 'held' };
    keeper.adopt(again.lease, again.leaseUntilMs);
    return { kind: 'leased-again' };
  }

  private complain(error: unknown, failures: number, keeper: LeaseKeeper, where: Where): void {
    const level = failures % 20 === 0 ? 'error' : 'warn';
    this.deps.logger[level]({
      msg: 'commit of a rotated refresh token failed; the token is kept in memory and the commit retried under the lease',
      ...where,
      attempt: failures + 1,
      leaseRemainingMs: Math.round(keeper.remainingMs),
      error: (error as Error).message,
    });
  }

  /**
   * Before each retry the lease is made sure of, so a commit never runs on a lapsed one
   * when it can be extended; if it cannot (database still away), the commit is fenced
   * on the lease id anyway and lands exactly when nobody else claimed the credential.
   */
  private async pause(delay: number, keeper: LeaseKeeper): Promise<void> {
    await sleep(delay);
    if (keeper.remainingMs < COMMIT_RETRY_MAX_MS) await keeper.extend();
  }

  /**
   * Bounds one commit attempt by the lease: a statement that hangs (packets silently
   * dropped) past the local deadline is noticed and logged, and the retry loop goes on
   * (the hung statement may still land; the next attempt's fence then sees it).
   */
  private async withinLease<T>(attempt: Promise<T>, keeper: LeaseKeeper): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const bound = Math.max(COMMIT_RETRY_MAX_MS, keeper.remainingMs);
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`commit did not finish within ${Math.round(bound)} ms (lease deadline)`)),
        bound,
      );
    });
    attempt.catch(() => undefined);
    try {
      return await Promise.race([attempt, hung]);
    } finally {
      clearTimeout(timer);
    }
  }
}
