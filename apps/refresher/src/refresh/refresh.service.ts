import { Inject, Injectable, Logger } from '@nestjs/common';
import type { ErrorCode } from '@tokenkeeper/contracts';
import pLimit, { type LimitFunction } from 'p-limit';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Clock } from '../domain/clock.js';
import type { Credential, LeasedCredential } from '../domain/credential.js';
import { TokenChangeNotifier } from '../events/token-change.notifier.js';
import { auditRecord } from '../persistence/audit-record.js';
import { CredentialRepository, type FailureWrite } from '../persistence/credential.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { TOKEN_ENDPOINT } from '../providers/provider.tokens.js';
import type { ProviderConfig, TokenEndpoint, TokenFailure } from '../providers/provider.types.js';
import { RefreshMetrics } from './refresh.metrics.js';
import { retryDelayMs, scheduleRefresh } from './refresh-policy.js';

export type RefreshOutcome =
  | { kind: 'refreshed'; credential: Credential }
  | { kind: 'failed'; credential: Credential; code: ErrorCode; message: string }
  /** Our lease was taken over or the version moved: someone else's write stands. */
  | { kind: 'superseded' };

/** Time kept in hand between the end of a token request and the end of its lease. */
const LEASE_SAFETY_MS = 2_000;
/** A request is not started with less time than this before the lease deadline. */
const MIN_REQUEST_WINDOW_MS = 1_000;
/** After cancelling the requests still in flight at shutdown, how long their leases get to be given back by them. */
const CANCEL_SETTLE_MS = 1_000;

/** True when every promise settled within `ms`. */
async function waitSettled(promises: Promise<unknown>[], ms: number): Promise<boolean> {
  if (promises.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([Promise.allSettled(promises).then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Refreshes one leased credential: token request (bounded per provider), new schedule,
 * fenced write with its audit records, then the committed change goes to the notifier
 * (cache and events). Never two requests with
 * the same refresh token: the lease makes this replica the only one that may present
 * it, the request is cut off before the lease ends, and the write lands only while the
 * lease still holds.
 */
@Injectable()
export class RefreshService {
  private readonly logger = new Logger(RefreshService.name);
  private readonly limits = new Map<string, LimitFunction>();
  /** Leased work in this process, by lease id: what shutdown waits for, or gives back. */
  private readonly active = new Map<string, { leased: LeasedCredential; done: Promise<unknown> }>();
  /** Set at shutdown: no token request starts any more; queued and new leases are given back. */
  private draining = false;
  /** Aborted when the shutdown grace period is over: cancels the token requests still in flight. */
  private readonly cancelInFlight = new AbortController();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: CredentialRepository,
    private readonly providers: ProviderRegistry,
    @Inject(TOKEN_ENDPOINT) private readonly endpoint: TokenEndpoint,
    private readonly notifier: TokenChangeNotifier,
    private readonly clock: Clock,
    private readonly metrics: RefreshMetrics,
  ) {}

  /** Refreshes under the lease; the lease is always either used by a fenced write or given back. */
  async refreshLeased(leased: LeasedCredential): Promise<RefreshOutcome> {
    if (this.draining) {
      await this.repository.releaseLease(leased.credential, leased.lease);
      return { kind: 'superseded' };
    }
    const done = this.refreshUnderLease(leased);
    const entry = { leased, done: done.catch(() => undefined) };
    this.active.set(leased.lease.leaseId, entry);
    try {
      return await done;
    } finally {
      if (this.active.get(leased.lease.leaseId) === entry) this.active.delete(leased.lease.leaseId);
    }
  }

  private async refreshUnderLease({ credential, lease }: LeasedCredential): Promise<RefreshOutcome> {
    const { leaseSeconds, requestTimeoutMs } = this.config.refresh;
    // The config guarantees lease > request timeout. Keep up to LEASE_SAFETY_MS of the lease
    // for the commit, but never so much that a short lease leaves no room for a request
    // (LEASE_SECONDS=3 with REFRESH_TIMEOUT_MS=1000 used to leave exactly 1 s, below the
    // minimum window, so every claim was released unused and claimed again, forever).
    const leaseMs = leaseSeconds * 1000;
    const windowMs = leaseMs - Math.min(LEASE_SAFETY_MS, leaseMs - requestTimeoutMs);
    const leaseDeadline = performance.now() + windowMs;
    const dueAt = credential.nextRefreshAt;
    const provider = this.providers.get(credential.provider);
    if (!provider) {
      return this.fail(credential, lease, 1, {
        kind: 'misconfigured',
        code: 'unknown_provider',
        message: `provider "${credential.provider}" is not in the providers file`,
      });
    }
    if (provider.grant === 'refresh_token' && !credential.refreshToken) {
      return this.fail(credential, lease, 1, { kind: 'invalid_grant', code: 'no_refresh_token', message: 'no refresh token stored' });
    }

    const started = performance.now();
    const result = await this.limitFor(provider)(async () => {
      const remaining = leaseDeadline - performance.now();
      // Queued too long (or shutting down): give the lease back rather than race it.
      if (this.draining || remaining < Math.min(MIN_REQUEST_WINDOW_MS, windowMs / 2)) return null;
      return this.endpoint.requestToken({
        provider,
        refreshToken: provider.grant === 'refresh_token' ? credential.refreshToken : undefined,
        signal: AbortSignal.any([AbortSignal.timeout(Math.floor(Math.min(remaining, requestTimeoutMs))), this.cancelInFlight.signal]),
      });
    });
    if (result === null) {
      // Never sent: the refresh token is untouched, so another replica may take it at once.
      await this.repository.releaseLease(credential, lease);
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
    if (!result.ok) return this.fail(credential, lease, credential.failures + 1, result.failure, provider);

    const token = result.token;
    if (provider.grant === 'refresh_token' && !token.refreshToken && provider.rotation !== undefined && provider.rotation !== 'none') {
      this.logger.warn({ msg: 'a rotating provider answered without a new refresh token; the old one is kept', provider: provider.id });
    }
    const lifetime = token.expiresInSeconds ?? provider.defaultTtlSeconds;
    const schedule = scheduleRefresh({
      issuedAt: token.requestedAt,
      lifetimeSeconds: lifetime,
      refreshInSeconds: token.refreshInSeconds,
      threshold: provider.threshold,
      minMarginSeconds: this.config.refresh.minMarginSeconds,
      random: this.clock.random(),
    });
    const audit = auditRecord('refreshed', credential, this.config.replicaId, {
      outcome: token.refreshToken && !token.refreshToken.equals(credential.refreshToken) ? 'rotated' : 'refreshed',
    });
    const committed = await this.repository.commitRefresh(credential, lease, {
      accessToken: token.accessToken,
      // No new refresh token (or an empty one) means: keep the old one.
      refreshToken: token.refreshToken ?? credential.refreshToken,
      tokenType: token.tokenType,
      scope: token.scope,
      issuedAt: token.requestedAt,
      expiresAt: schedule.expiresAt,
      nextRefreshAt: provider.grant === 'refresh_token' && !(token.refreshToken ?? credential.refreshToken) ? null : schedule.nextRefreshAt,
    }, [audit]);
    if (!committed) {
      this.metrics.countRefresh(provider.id, 'superseded');
      this.logger.warn({ msg: 'refresh result discarded: lease lost or version moved', tenant: credential.tenant, connection: credential.connection });
      return { kind: 'superseded' };
    }
    this.metrics.countRefresh(provider.id, 'success');
    if (dueAt) this.metrics.observeLateness((this.clock.now() - dueAt.getTime()) / 1000);
    this.notifier.committed(committed);
    return { kind: 'refreshed', credential: committed.credential };
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
        lastError: { code: 'reauth_required', message: `the provider refused the refresh token (${failure.code}); re-register the credential` },
        nextRefreshAt: null,
      };
      this.logger.warn({ msg: 'credential needs re-authorization', ...where, code: failure.code });
    } else if (failure.kind === 'misconfigured') {
      const delay = this.config.refresh.misconfiguredRetryMs * (0.5 + this.clock.random() / 2);
      write = {
        status: 'failing',
        failures: attempt,
        lastError: { code: failure.code === 'unknown_provider' ? 'unknown_provider' : 'refresh_failed', message: `provider configuration rejected: ${failure.message}` },
        nextRefreshAt: new Date(now + delay),
      };
      this.logger.error({ msg: 'PROVIDER MISCONFIGURED: token requests are rejected; check the providers file', ...where, code: failure.code, failure: failure.message });
    } else {
      const delay = retryDelayMs({
        attempt,
        baseMs: this.config.refresh.backoffBaseMs,
        capMs: this.config.refresh.backoffMaxMs,
        random: this.clock.random(),
        retryAfterMs: failure.retryAfterMs,
      });
      write = {
        status: 'failing',
        failures: attempt,
        lastError: { code: failure.code === 'network' || failure.code === 'timeout' ? 'unavailable' : 'refresh_failed', message: failure.message },
        nextRefreshAt: new Date(now + delay),
      };
      this.logger.warn({ msg: 'refresh failed; will retry', ...where, code: failure.code, attempt, retryInMs: delay });
    }
    const type = write.status === 'reauth_required' ? 'reauth_required' : 'failed';
    const audit = auditRecord(type, credential, this.config.replicaId, { outcome: failure.kind, code: failure.code, message: failure.message });
    const committed = await this.repository.commitFailure(credential, lease, write, [audit]);
    this.metrics.countRefresh(provider?.id ?? credential.provider, failure.kind);
    if (!committed) return { kind: 'superseded' };
    this.notifier.committed(committed);
    return { kind: 'failed', credential: committed.credential, code: write.lastError.code, message: write.lastError.message };
  }

  private limitFor(provider: ProviderConfig): LimitFunction {
    let limit = this.limits.get(provider.id);
    if (!limit) {
      limit = pLimit(provider.maxConcurrency);
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
    const settled = (ms: number) => waitSettled([...this.active.values()].map((a) => a.done), ms);
    let cancelled = 0;
    if (!(await settled(graceMs))) {
      cancelled = this.active.size;
      this.cancelInFlight.abort();
      await settled(CANCEL_SETTLE_MS);
    }
    return { finished: started - cancelled, cancelled };
  }
}
