import { setMaxListeners } from 'node:events';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { settleWithin, sleep } from '@tokenkeeper/common';
import { credentialId, type ErrorCode } from '@tokenkeeper/contracts';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Clock } from '../domain/clock.js';
import type { Credential, LeasedCredential } from '../domain/credential.js';
import { TokenChangeNotifier } from '../events/token-change.notifier.js';
import { auditRecord } from '../persistence/audit-record.js';
import type { CommittedChange } from '../domain/committed-change.js';
import { isLive } from '../domain/token-validity.js';
import {
  type ClaimRoom,
  CredentialRepository,
  type FailureWrite,
  type TokenWrite,
} from '../persistence/credential.repository.js';
import type { PendingAuditRecord } from '../persistence/audit-record.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { TOKEN_ENDPOINT } from '../providers/provider.tokens.js';
import type { IssuedToken, ProviderConfig, TokenEndpoint, TokenFailure } from '../providers/provider.types.js';
import { tenantRefusal } from '../providers/tenant-access.policy.js';
import { bindProvider } from '../providers/url-placeholders.policy.js';
import { FairShareLimiter } from './fair-share.limiter.js';
import { LeaseKeeper } from './lease-keeper.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import {
  DEFAULT_EXPIRY_WARNING_DAYS,
  DEFAULT_KEEP_ALIVE_SECONDS,
  earlier,
  expiryWarningAt,
  retryDelayMs,
  scheduleRefresh,
} from './refresh-policy.js';
import type { LeasedRefresher } from './refresher.ports.js';

export type RefreshOutcome =
  | { kind: 'refreshed'; credential: Credential }
  | { kind: 'failed'; credential: Credential; code: ErrorCode; message: string }
  /** Our lease was taken over or the version moved: someone else's write stands. */
  | { kind: 'superseded' };

/**
 * A token request stops this long before the local lease deadline when no extension could
 * be confirmed (the database is unreachable from here): past it, another replica might
 * claim the credential and present the same refresh token.
 */
const LEASE_SAFETY_MS = 2_000;
/** A request is not started with less confirmed lease than this. */
const MIN_REQUEST_WINDOW_MS = 1_000;
/**
 * After a request was abandoned (timed out; the provider may have rotated the refresh token
 * without our seeing the answer), the retry comes within this, whatever the attempt count:
 * it must land inside the provider's reuse grace (Okta's default is 30 s, Auth0's reuse
 * interval is set per tenant) to present the old token without revoking the family.
 */
export const ABANDONED_RETRY_MAX_MS = 5_000;
/** A failed commit of a rotated token is retried this often at first, backing off to the max. */
const COMMIT_RETRY_FIRST_MS = 100;
const COMMIT_RETRY_MAX_MS = 2_000;
/** After cancelling the requests still in flight at shutdown, how long their leases get to be given back by them. */
const CANCEL_SETTLE_MS = 1_000;

/**
 * One signal for a token request: aborted with a TimeoutError after `timeoutMs` (which the
 * endpoint classifies as a timeout, as it did AbortSignal.timeout's), or with the reason of
 * the first source that aborts (shutdown, a lease that can no longer be kept). What
 * AbortSignal.any(AbortSignal.timeout(…), …) did, at a fraction of its CPU per request:
 * those composite signals stay registered (weakly) on the long-lived shutdown signal until
 * collected, and showed at about 2 % of the refresher's profile. `release` when
 * the request is over.
 */
function requestSignal(timeoutMs: number, ...sources: AbortSignal[]): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const onAbort = (event: Event) => controller.abort((event.target as AbortSignal).reason);
  const timer = setTimeout(
    () => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
    timeoutMs,
  );
  timer.unref();
  for (const source of sources) {
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    source.addEventListener('abort', onAbort, { once: true });
  }
  return {
    signal: controller.signal,
    release: () => {
      clearTimeout(timer);
      for (const source of sources) source.removeEventListener('abort', onAbort);
    },
  };
}

function withoutListenerWarning(controller: AbortController): AbortController {
  setMaxListeners(0, controller.signal);
  return controller;
}

/**
 * Refreshes one leased credential: token request (bounded per provider), new schedule,
 * fenced write with its audit records, then the committed change goes to the notifier
 * (cache and events). Never two requests with the same refresh token: the lease makes this
 * replica the only one that may present it, a LeaseKeeper extends it while the work runs
 * (and stops the request if it can no longer be sure of it), and the write lands only while
 * the lease still holds. A rotated refresh token, once the provider answered, is held until
 * its commit lands or a newer version is found (commitRotated), never dropped.
 */
@Injectable()
export class RefreshService implements LeasedRefresher {
  private readonly logger = new Logger(RefreshService.name);
  /** Per provider, its maxConcurrency request slots, taken in turns by the tenants with work waiting. */
  private readonly limits = new Map<string, FairShareLimiter>();
  /** Leased work in this process, by lease id: what shutdown waits for, or gives back. */
  private readonly active = new Map<string, { leased: LeasedCredential; done: Promise<unknown> }>();
  /**
   * Claimed (scheduled) work per provider, queued for a slot or requesting: what the next
   * claim may add. On-demand work is not counted, or a tenant's storm of admin refreshes
   * would stop the claims, and with them every other tenant's due refreshes; it gets its
   * tenant's share of the slots like all work (FairShareLimiter).
   */
  private readonly busy = new Map<string, number>();
  /** Providers this process has had work for: their limits bound every later claim. */
  private readonly seenProviders = new Set<string>();
  /** Rotated tokens whose commit has not landed yet, by credential: a new lease on one is handed to it. */
  private readonly pendingCommits = new Map<string, { keeper: LeaseKeeper; done: Promise<RefreshOutcome> }>();
  /** Set at shutdown: no token request starts any more; queued and new leases are given back. */
  private draining = false;
  /** Aborted when the shutdown grace period is over: cancels the token requests still in flight. */
  /**
   * Aborts every token request at shutdown. Each request in flight listens to it (requestSignal)
   * until it ends, so it has as many listeners as requests in flight: not a leak, and not worth
   * Node's warning past 10.
   */
  private readonly cancelInFlight = withoutListenerWarning(new AbortController());

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: CredentialRepository,
    private readonly providers: ProviderRegistry,
    @Inject(TOKEN_ENDPOINT) private readonly endpoint: TokenEndpoint,
    private readonly notifier: TokenChangeNotifier,
    private readonly clock: Clock,
    private readonly metrics: RefreshMetrics,
  ) {}

  /**
   * Refreshes under the lease; the lease is always either used by a fenced write or given
   * back. `leaseUntilMs` is the local deadline the repository computed from the moment before
   * its statement; without one (tests), the lease counts from now.
   */
  async refreshLeased(
    leased: LeasedCredential & { leaseUntilMs?: number },
    options: { onDemand?: boolean } = {},
  ): Promise<RefreshOutcome> {
    const untilMs = leased.leaseUntilMs ?? this.clock.now() + this.config.refresh.leaseSeconds * 1000;
    const pending = this.pendingCommits.get(credentialId(leased.credential));
    if (pending) {
      // Our own lease lapsed while a rotated token waited for its commit, and this process
      // claimed the credential again: the new lease serves that commit, no request is made.
      pending.keeper.adopt(leased.lease, untilMs);
      return pending.done;
    }
    if (this.draining) {
      await this.repository.releaseLease(leased.credential, leased.lease);
      return { kind: 'superseded' };
    }
    const providerId = leased.credential.provider;
    this.seenProviders.add(providerId);
    const counted = options.onDemand !== true;
    if (counted) this.busy.set(providerId, (this.busy.get(providerId) ?? 0) + 1);
    const keeper = new LeaseKeeper(
      this.repository,
      this.clock,
      leased.credential,
      leased.lease,
      untilMs,
      this.config.refresh.leaseSeconds,
      this.safetyMs(),
    ).start();
    const done = this.refreshUnderLease(leased.credential, keeper);
    const entry = { leased, done: done.catch(() => undefined) };
    this.active.set(leased.lease.leaseId, entry);
    try {
      return await done;
    } finally {
      keeper.stop();
      if (counted) {
        const left = (this.busy.get(providerId) ?? 1) - 1;
        if (left > 0) this.busy.set(providerId, left);
        else this.busy.delete(providerId);
      }
      if (this.active.get(leased.lease.leaseId) === entry) this.active.delete(leased.lease.leaseId);
    }
  }

  /**
   * What the next claim may take: per provider with work here, its free request slots
   * (maxConcurrency less the claimed work it has), so claimed work can be sent at once; a
   * provider this process has not had work for yet, one row per claim until then.
   */
  claimRoom(): ClaimRoom {
    const perProvider: Record<string, number> = {};
    for (const id of this.seenProviders) {
      const provider = this.providers.get(id);
      if (provider) perProvider[id] = Math.max(0, provider.maxConcurrency - (this.busy.get(id) ?? 0));
    }
    return { perProvider, others: 1 };
  }

  /** Keep LEASE_SAFETY_MS of the lease in hand, but never so much that a short lease leaves no time for a request. */
  private safetyMs(): number {
    return Math.min(LEASE_SAFETY_MS, (this.config.refresh.leaseSeconds * 1000) / 3);
  }

  private async refreshUnderLease(credential: Credential, keeper: LeaseKeeper): Promise<RefreshOutcome> {
    const { requestTimeoutMs } = this.config.refresh;
    const lease = keeper.lease;
    const dueAt = credential.nextRefreshAt;
    const configured = this.providers.get(credential.provider);
    if (!configured) {
      return this.fail(credential, lease, 1, {
        kind: 'misconfigured',
        code: 'unknown_provider',
        message: `provider "${credential.provider}" is not in the providers file`,
      });
    }
    let provider: ProviderConfig;
    try {
      provider = bindProvider(configured, credential.connectionConfig);
    } catch (error) {
      // The providers file gained a placeholder this credential has no (fitting) value for.
      return this.fail(credential, lease, credential.failures + 1, {
        kind: 'misconfigured',
        code: 'connection_config',
        message: error instanceof Error ? error.message : 'connectionConfig does not fit the provider',
      });
    }
    // Scheduled, on-demand and admin refreshes all pass here, before any request is made.
    const refusal = tenantRefusal(provider, credential.tenant);
    if (refusal !== undefined) return this.refuse(credential, lease, `not refreshed: ${refusal}`);
    if (provider.grant === 'refresh_token' && !credential.refreshToken) {
      return this.fail(credential, lease, 1, {
        kind: 'invalid_grant',
        code: 'no_refresh_token',
        message: 'no refresh token stored',
      });
    }

    let started = performance.now();
    const result = await this.limitFor(provider).run(credential.tenant, async () => {
      // While the work waited for a slot, the keeper kept the lease alive; a lease it could
      // not confirm (or shutting down) means: give it back unused rather than race it.
      if (this.draining || keeper.lost.aborted || keeper.remainingMs < Math.min(MIN_REQUEST_WINDOW_MS, this.safetyMs()))
        return null;
      started = performance.now();
      // The full timeout, however long the work was queued: the keeper extends the lease
      // while the request runs and stops it only if the lease can no longer be confirmed.
      const stop = requestSignal(requestTimeoutMs, this.cancelInFlight.signal, keeper.lost);
      try {
        return await this.endpoint.requestToken({
          provider,
          refreshToken: provider.grant === 'refresh_token' ? credential.refreshToken : undefined,
          signal: stop.signal,
        });
      } finally {
        stop.release();
      }
    });
    if (result === null) {
      // Never sent: the refresh token is untouched, so another replica may take it at once.
      await this.repository.releaseLease(credential, keeper.lease).catch(() => undefined);
      return { kind: 'superseded' };
    }
    if (!result.ok && result.failure.code === 'aborted' && keeper.lost.aborted) {
      // Stopped because this replica could no longer be sure of its lease: another replica
      // may hold it now. Nothing can be written under it; the lease is left to expire.
      this.logger.error({
        msg: 'token request stopped: the lease could not be kept; the provider may have rotated the refresh token',
        tenant: credential.tenant,
        connection: credential.connection,
      });
      return { kind: 'superseded' };
    }
    if (!result.ok && result.failure.code === 'aborted' && this.cancelInFlight.signal.aborted) {
      // Cancelled at shutdown after it was sent: the provider may still be processing it
      // (and rotating the refresh token). Giving the lease back now would let another
      // replica present the same refresh token while this request is still in flight, so
      // the lease is kept and simply expires. Not the provider's fault: nothing recorded.
      return { kind: 'superseded' };
    }
    this.metrics.observeRequest(provider.id, (performance.now() - started) / 1000);
    if (!result.ok) return this.fail(credential, keeper.lease, credential.failures + 1, result.failure, provider);

    const token = result.token;
    if (
      provider.grant === 'refresh_token' &&
      !token.refreshToken &&
      provider.rotation !== undefined &&
      provider.rotation !== 'none'
    ) {
      this.logger.warn({
        msg: 'a rotating provider answered without a new refresh token; the old one is kept',
        provider: provider.id,
      });
    }
    const lifetime = token.expiresInSeconds ?? provider.defaultTtlSeconds;
    const schedule = scheduleRefresh({
      issuedAt: token.requestedAt,
      lifetimeSeconds: lifetime,
      refreshInSeconds: token.refreshInSeconds,
      threshold: provider.threshold,
      minMarginSeconds: this.config.refresh.minMarginSeconds,
      random: this.clock.random(),
      keepAliveSeconds: provider.keepAliveSeconds ?? DEFAULT_KEEP_ALIVE_SECONDS,
    });
    const rotated = token.refreshToken !== undefined && !token.refreshToken.equals(credential.refreshToken);
    const audit = [
      auditRecord('refreshed', credential, this.config.replicaId, { outcome: rotated ? 'rotated' : 'refreshed' }),
    ];
    const recovery = credential.status === 'failing' ? this.recoveryOf(credential, audit) : undefined;
    const lifeOfGrant = this.grantExpiry(credential, provider, token, audit);
    const committed = await this.commitRotated(
      credential,
      keeper,
      {
        accessToken: token.accessToken,
        // No new refresh token (or an empty one) means: keep the old one.
        refreshToken: token.refreshToken ?? credential.refreshToken,
        tokenType: token.tokenType,
        scope: token.scope,
        extras: token.extras,
        issuedAt: token.requestedAt,
        expiresAt: schedule.expiresAt,
        nextRefreshAt:
          provider.grant === 'refresh_token' && !(token.refreshToken ?? credential.refreshToken)
            ? null
            : earlier(schedule.nextRefreshAt, lifeOfGrant.warnAt),
        refreshTokenExpiresAt: lifeOfGrant.refreshTokenExpiresAt,
        expiryWarnedFor: lifeOfGrant.warning?.expiresAt,
      },
      audit,
    );
    if (committed === 'landed') {
      // Our write landed but its answer was lost (the connection died): the row holds it.
      this.metrics.countRefresh(provider.id, 'success');
      const stored = await this.repository.find(credential);
      return stored ? { kind: 'refreshed', credential: stored } : { kind: 'superseded' };
    }
    if (!committed) {
      this.metrics.countRefresh(provider.id, 'superseded');
      this.logger.warn({
        msg: 'refresh result discarded: lease lost or version moved',
        tenant: credential.tenant,
        connection: credential.connection,
      });
      return { kind: 'superseded' };
    }
    this.metrics.countRefresh(provider.id, 'success');
    if (dueAt) this.metrics.observeLateness((this.clock.now() - dueAt.getTime()) / 1000);
    this.notifier.committed(committed);
    if (recovery)
      this.notifier.recovered(committed.credential, recovery.failedSince, recovery.attempts, recovery.eventId);
    if (lifeOfGrant.warning) {
      this.notifier.expiring(committed.credential, lifeOfGrant.warning.expiresAt, lifeOfGrant.warning.eventId);
    }
    return { kind: 'refreshed', credential: committed.credential };
  }

  /**
   * The first success after a run of failures: its `recovered` record joins the refresh's
   * commit, so exactly the commit that ends the run (fenced on the version read while
   * `failing`) announces it. Rows that began failing before `failing_since` was kept fall
   * back to their last change.
   */
  private recoveryOf(
    credential: Credential,
    audit: PendingAuditRecord[],
  ): { failedSince: Date; attempts: number; eventId: string } {
    const attempts = credential.failures;
    const record = auditRecord('recovered', credential, this.config.replicaId, {
      outcome: 'recovered',
      message: `refreshed again after ${attempts} failed attempts`,
    });
    audit.push(record);
    return { failedSince: credential.failingSince ?? credential.updatedAt, attempts, eventId: record.event_id };
  }

  /**
   * The refresh token's absolute expiry after this refresh: a new one from the response, else
   * as stored. When its
   * warning time has come and it was not warned of yet, the `expiring` record joins the
   * commit; when it is still ahead, the next refresh is brought forward to it, so the
   * scheduler needs no second timer (one extra refresh per grant, at most).
   */
  private grantExpiry(
    credential: Credential,
    provider: ProviderConfig,
    token: IssuedToken,
    audit: PendingAuditRecord[],
  ): {
    refreshTokenExpiresAt?: Date | null;
    warnAt: Date | null;
    warning?: { expiresAt: Date; eventId: string };
  } {
    // A rotated refresh token without an expiry of its own belongs to the same grant, whose end stays.
    const fromResponse =
      token.refreshTokenExpiresInSeconds !== undefined
        ? new Date(token.requestedAt.getTime() + token.refreshTokenExpiresInSeconds * 1000)
        : undefined;
    const expiresAt = fromResponse === undefined ? (credential.refreshTokenExpiresAt ?? null) : fromResponse;
    const warnAt = expiryWarningAt(
      expiresAt,
      credential.expiryWarnedFor,
      provider.expiryWarningDays ?? DEFAULT_EXPIRY_WARNING_DAYS,
    );
    if (expiresAt === null || warnAt === null || warnAt.getTime() > this.clock.now()) {
      return { refreshTokenExpiresAt: fromResponse, warnAt };
    }
    const record = auditRecord('expiring', credential, this.config.replicaId, {
      outcome: 'expiring',
      message: `refresh token expires at ${expiresAt.toISOString()}`,
    });
    audit.push(record);
    return { refreshTokenExpiresAt: fromResponse, warnAt: null, warning: { expiresAt, eventId: record.event_id } };
  }

  /**
   * The fenced commit of a token the provider has issued, retried until it lands or a newer
   * version is found: the new refresh token exists only in this process, and the provider has
   * already retired the old one. Database errors (restart, failover, a dropped connection, a
   * statement timeout) are retried with backoff while the keeper extends the lease; a fence
   * that no longer holds is examined: a newer version stands (ours, if its refresh token is
   * ours), or the lease lapsed and nobody took it, and it is taken again. Ends only at
   * shutdown, loudly.
   */
  private async commitRotated(
    credential: Credential,
    keeper: LeaseKeeper,
    write: TokenWrite,
    audit: PendingAuditRecord[],
  ): Promise<CommittedChange | null | 'landed'> {
    const id = credentialId(credential);
    let resolve!: (outcome: RefreshOutcome) => void;
    const outcome = new Promise<RefreshOutcome>((r) => (resolve = r));
    let delay = COMMIT_RETRY_FIRST_MS;
    let failures = 0;
    const where = { tenant: credential.tenant, connection: credential.connection, provider: credential.provider };
    try {
      for (;;) {
        try {
          const committed = await this.withinLease(
            this.repository.commitRefresh(credential, keeper.lease, write, audit),
            keeper,
          );
          if (committed) return committed;
          const now = await this.repository.find(credential);
          if (!now) return null;
          if (now.version > keeper.lease.version) {
            return write.refreshToken && now.refreshToken?.equals(write.refreshToken) ? 'landed' : null;
          }
          if (!isLive(now)) {
            this.logger.error({
              msg: 'ROTATED REFRESH TOKEN NOT STORED: the credential left the live states meanwhile',
              ...where,
              status: now.status,
            });
            return null;
          }
          const again = await this.repository.tryLease(
            credential,
            this.config.replicaId,
            this.config.refresh.leaseSeconds,
            keeper.lease.version,
          );
          if (again) {
            keeper.adopt(again.lease, again.leaseUntilMs);
            continue;
          }
          // Someone holds the lease: this process (a new claim is handed to us, see
          // refreshLeased) or another replica, whose write or failure we will see.
          if (failures === 0) this.pendingCommits.set(id, { keeper, done: outcome });
        } catch (error) {
          if (failures === 0) this.pendingCommits.set(id, { keeper, done: outcome });
          const level = failures % 20 === 0 ? 'error' : 'warn';
          this.logger[level]({
            msg: 'commit of a rotated refresh token failed; the token is kept in memory and the commit retried under the lease',
            ...where,
            attempt: failures + 1,
            leaseRemainingMs: Math.round(keeper.remainingMs),
            error: (error as Error).message,
          });
        }
        failures++;
        if (this.cancelInFlight.signal.aborted) {
          this.logger.error({
            msg: 'ROTATED REFRESH TOKEN LOST: shutting down before its commit could land; the credential may need re-authorization',
            ...where,
          });
          return null;
        }
        await sleep(delay);
        delay = Math.min(COMMIT_RETRY_MAX_MS, delay * 2);
        // Before each retry the lease is made sure of, so a commit never runs on a lapsed one
        // when it can be extended; if it cannot (database still away), the commit is fenced
        // on the lease id anyway and lands exactly when nobody else claimed the credential.
        if (keeper.remainingMs < COMMIT_RETRY_MAX_MS) await keeper.extend();
      }
    } finally {
      if (this.pendingCommits.get(id)?.keeper === keeper) this.pendingCommits.delete(id);
      // Whoever joined this commit through a new lease hears how it ended.
      void outcome;
      resolve({ kind: 'superseded' });
    }
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

  private async fail(
    credential: Credential,
    lease: LeasedCredential['lease'],
    attempt: number,
    failure: TokenFailure,
    provider?: ProviderConfig,
  ): Promise<RefreshOutcome> {
    const now = this.clock.now();
    const where = { tenant: credential.tenant, connection: credential.connection, provider: credential.provider };
    let write: FailureWrite;
    if (failure.kind === 'invalid_grant') {
      write = {
        status: 'reauth_required',
        failures: attempt,
        lastError: {
          code: 'reauth_required',
          message: `the provider refused the refresh token (${failure.code}); re-register the credential`,
        },
        nextRefreshAt: null,
      };
      this.logger.warn({ msg: 'credential needs re-authorization', ...where, code: failure.code });
    } else if (failure.kind === 'misconfigured') {
      const delay = this.config.refresh.misconfiguredRetryMs * (0.5 + this.clock.random() / 2);
      write = {
        status: 'failing',
        failures: attempt,
        lastError: {
          code: failure.code === 'unknown_provider' ? 'unknown_provider' : 'refresh_failed',
          message: `provider configuration rejected: ${failure.message}`,
        },
        nextRefreshAt: new Date(now + delay),
      };
      this.logger.error({
        msg: 'PROVIDER MISCONFIGURED: token requests are rejected; check the providers file',
        ...where,
        code: failure.code,
        failure: failure.message,
      });
    } else {
      let delay = retryDelayMs({
        attempt,
        baseMs: this.config.refresh.backoffBaseMs,
        capMs: this.config.refresh.backoffMaxMs,
        random: this.clock.random(),
        retryAfterMs: failure.retryAfterMs,
      });
      // An abandoned request may have rotated the refresh token at the provider: retry while
      // its reuse grace lasts. A provider that keeps timing out is still bounded: each try
      // holds one of its maxConcurrency slots for the whole REFRESH_TIMEOUT_MS.
      if (failure.code === 'timeout') delay = Math.min(delay, ABANDONED_RETRY_MAX_MS * (0.5 + this.clock.random() / 2));
      write = {
        status: 'failing',
        failures: attempt,
        lastError: {
          code: failure.code === 'network' || failure.code === 'timeout' ? 'unavailable' : 'refresh_failed',
          message: failure.message,
        },
        nextRefreshAt: new Date(now + delay),
      };
      this.logger.warn({ msg: 'refresh failed; will retry', ...where, code: failure.code, attempt, retryInMs: delay });
    }
    const type = write.status === 'reauth_required' ? 'reauth_required' : 'failed';
    const audit = auditRecord(type, credential, this.config.replicaId, {
      outcome: failure.kind,
      code: failure.code,
      message: failure.message,
    });
    const committed = await this.repository.commitFailure(credential, lease, write, [audit]);
    this.metrics.countRefresh(provider?.id ?? credential.provider, failure.kind);
    if (!committed) return { kind: 'superseded' };
    this.notifier.committed(committed);
    return {
      kind: 'failed',
      credential: committed.credential,
      code: write.lastError.code,
      message: write.lastError.message,
    };
  }

  /**
   * A credential whose provider no longer allows its tenant (the providers file changed):
   * nothing is requested. It stays `failing` with `forbidden`, and is looked at again after
   * MISCONFIGURED_RETRY_MS, so that it resumes by itself once the file allows it again. The
   * refusal is recorded (audit, `token.failed`) when it starts, not at every look.
   */
  private async refuse(
    credential: Credential,
    lease: LeasedCredential['lease'],
    message: string,
  ): Promise<RefreshOutcome> {
    const first = credential.lastError?.code !== 'forbidden';
    const write: FailureWrite = {
      status: 'failing',
      failures: credential.failures,
      lastError: { code: 'forbidden', message },
      nextRefreshAt: new Date(
        this.clock.now() + this.config.refresh.misconfiguredRetryMs * (0.5 + this.clock.random() / 2),
      ),
    };
    const audit = first
      ? [auditRecord('failed', credential, this.config.replicaId, { outcome: 'forbidden', code: 'forbidden', message })]
      : [];
    const committed = await this.repository.commitFailure(credential, lease, write, audit);
    this.metrics.countRefresh(credential.provider, 'forbidden');
    if (!committed) return { kind: 'superseded' };
    if (first) {
      this.logger.warn({
        msg: 'credential not refreshed: its provider does not allow its tenant',
        tenant: credential.tenant,
        connection: credential.connection,
        provider: credential.provider,
      });
      this.notifier.committed(committed);
    }
    return { kind: 'failed', credential: committed.credential, code: 'forbidden', message };
  }

  private limitFor(provider: ProviderConfig): FairShareLimiter {
    let limit = this.limits.get(provider.id);
    if (!limit) {
      limit = new FairShareLimiter(provider.maxConcurrency);
      this.limits.set(provider.id, limit);
    }
    return limit;
  }

  /** Refreshes under a lease in this process right now (waiting for a provider slot, requesting or writing). */
  get activeCount(): number {
    return this.active.size;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Shutdown: no token request starts from now on (queued ones and new leases are given
   * back at once), and the requests in flight get `graceMs` to finish and commit. Those
   * still running then are cancelled; their leases are kept until they expire (at most
   * LEASE_SECONDS), because the provider may still be processing them: releasing at once
   * would put two requests with one refresh token in flight. The default grace
   * (SHUTDOWN_GRACE_MS) outlasts REFRESH_TIMEOUT_MS, so with defaults nothing is cancelled.
   */
  async drain(graceMs: number): Promise<{ finished: number; cancelled: number }> {
    this.draining = true;
    const started = this.active.size;
    const settled = (ms: number) =>
      settleWithin(
        [...this.active.values()].map((a) => a.done),
        ms,
      );
    let cancelled = 0;
    if (!(await settled(graceMs))) {
      cancelled = this.active.size;
      this.cancelInFlight.abort();
      await settled(CANCEL_SETTLE_MS);
    }
    return { finished: started - cancelled, cancelled };
  }
}
