import { setMaxListeners } from 'node:events';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { settleWithin } from '@tokenkeeper/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Clock } from '../domain/clock.js';
import type { Credential, LeasedCredential } from '../domain/credential.js';
import { TokenChangeNotifier } from '../events/token-change.notifier.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { type ClaimRoom, CredentialRepository } from '../persistence/credential.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { TOKEN_ENDPOINT } from '../providers/provider.tokens.js';
import type { ProviderConfig, TokenEndpoint } from '../providers/provider.types.js';
import { tenantRefusal } from '../providers/tenant-access.policy.js';
import { bindProvider } from '../providers/url-placeholders.policy.js';
import { IssuedTokenCommitter } from './issued-token.committer.js';
import { LeaseKeeper } from './lease-keeper.js';
import { RefreshFailureRecorder } from './refresh-failure.recorder.js';
import type { RefreshDeps, RefreshOutcome } from './refresh.types.js';
import type { LeasedRefresher } from './refresher.ports.js';
import { RotatedCommitRetrier } from './rotated-commit.retrier.js';
import { TokenRequestRunner } from './token-request.runner.js';

export type { RefreshOutcome } from './refresh.types.js';
export { ABANDONED_RETRY_MAX_MS } from './refresh-failure.recorder.js';

/**
 * A token request stops this long before the local lease deadline when no extension could
 * be confirmed (the database is unreachable from here): past it, another replica might
 * claim the credential and present the same refresh token.
 */
const LEASE_SAFETY_MS = 2_000;
/** A request is not started with less confirmed lease than this. */
const MIN_REQUEST_WINDOW_MS = 1_000;
/** After cancelling the requests still in flight at shutdown, how long their leases get to be given back by them. */
const CANCEL_SETTLE_MS = 1_000;

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
 * its commit lands or a newer version is found (RotatedCommitRetrier), never dropped.
 *
 * The steps are plain classes built here rather than Nest providers: they share this
 * service's shutdown state and log context, and nothing else injects them.
 * TokenRequestRunner sends the request, IssuedTokenCommitter commits and announces what it
 * issued, RefreshFailureRecorder records what it refused.
 */
@Injectable()
export class RefreshService implements LeasedRefresher {
  private readonly logger = new Logger(RefreshService.name);
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
  /** Set at shutdown: no token request starts any more; queued and new leases are given back. */
  private draining = false;
  /**
   * Aborted when the shutdown grace period is over: cancels the token requests still in
   * flight. Each request in flight listens to it until it ends, so it has as many listeners
   * as requests in flight: not a leak, and not worth Node's warning past 10.
   */
  private readonly cancelInFlight = withoutListenerWarning(new AbortController());
  private readonly requests: TokenRequestRunner;
  private readonly commits: RotatedCommitRetrier;
  private readonly issued: IssuedTokenCommitter;
  private readonly failures: RefreshFailureRecorder;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: CredentialRepository,
    private readonly providers: ProviderRegistry,
    @Inject(TOKEN_ENDPOINT) endpoint: TokenEndpoint,
    notifier: TokenChangeNotifier,
    private readonly clock: Clock,
    metrics: RefreshMetrics,
  ) {
    const deps: RefreshDeps = { config, repository, notifier, clock, metrics, logger: this.logger };
    this.requests = new TokenRequestRunner(endpoint, metrics, this.logger, {
      timeoutMs: config.refresh.requestTimeoutMs,
      minWindowMs: Math.min(MIN_REQUEST_WINDOW_MS, this.safetyMs()),
      cancelled: this.cancelInFlight.signal,
      draining: () => this.draining,
    });
    this.commits = new RotatedCommitRetrier(deps, this.cancelInFlight.signal);
    this.issued = new IssuedTokenCommitter(deps, this.commits);
    this.failures = new RefreshFailureRecorder(deps);
  }

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
    const joined = this.commits.join(leased.credential, leased.lease, untilMs);
    if (joined) return joined;
    if (this.draining) {
      await this.repository.releaseLease(leased.credential, leased.lease);
      return { kind: 'superseded' };
    }
    const providerId = leased.credential.provider;
    this.seenProviders.add(providerId);
    const counted = options.onDemand !== true;
    if (counted) this.countBusy(providerId, 1);
    const keeper = this.keeperFor(leased, untilMs);
    const done = this.refreshUnderLease(leased.credential, keeper);
    const entry = { leased, done: done.catch(() => undefined) };
    this.active.set(leased.lease.leaseId, entry);
    try {
      return await done;
    } finally {
      keeper.stop();
      if (counted) this.countBusy(providerId, -1);
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

  private countBusy(providerId: string, delta: 1 | -1): void {
    const now = (this.busy.get(providerId) ?? (delta > 0 ? 0 : 1)) + delta;
    if (now > 0) this.busy.set(providerId, now);
    else this.busy.delete(providerId);
  }

  private keeperFor(leased: LeasedCredential, untilMs: number): LeaseKeeper {
    const { credential, lease } = leased;
    const { leaseSeconds } = this.config.refresh;
    return new LeaseKeeper(
      this.repository,
      this.clock,
      credential,
      lease,
      untilMs,
      leaseSeconds,
      this.safetyMs(),
    ).start();
  }

  /** Keep LEASE_SAFETY_MS of the lease in hand, but never so much that a short lease leaves no time for a request. */
  private safetyMs(): number {
    return Math.min(LEASE_SAFETY_MS, (this.config.refresh.leaseSeconds * 1000) / 3);
  }

  /** The steps of one refresh: may it be requested, the request, then its failure or its commit. */
  private async refreshUnderLease(credential: Credential, keeper: LeaseKeeper): Promise<RefreshOutcome> {
    const checked = this.requestable(credential, keeper.lease);
    if ('refused' in checked) return checked.refused;
    const { provider } = checked;
    const answer = await this.requests.request(credential, provider, keeper);
    if (answer.kind === 'unsent') {
      // Never sent: the refresh token is untouched, so another replica may take it at once.
      await this.repository.releaseLease(credential, keeper.lease).catch(() => undefined);
      return { kind: 'superseded' };
    }
    if (answer.kind === 'abandoned') return { kind: 'superseded' };
    const { result } = answer;
    if (!result.ok)
      return this.failures.fail(credential, keeper.lease, credential.failures + 1, result.failure, provider);
    return this.issued.commit(credential, provider, keeper, result.token);
  }

  /**
   * The provider this credential is refreshed with, bound to its connection; or, when no
   * request may be made, the recorded failure. Scheduled, on-demand and admin refreshes all
   * pass here, before any request is made.
   */
  private requestable(
    credential: Credential,
    lease: LeasedCredential['lease'],
  ): { provider: ProviderConfig } | { refused: Promise<RefreshOutcome> } {
    const configured = this.providers.get(credential.provider);
    if (!configured) {
      const message = `provider "${credential.provider}" is not in the providers file`;
      return {
        refused: this.failures.fail(credential, lease, 1, { kind: 'misconfigured', code: 'unknown_provider', message }),
      };
    }
    let provider: ProviderConfig;
    try {
      provider = bindProvider(configured, credential.connectionConfig);
    } catch (error) {
      // The providers file gained a placeholder this credential has no (fitting) value for.
      const message = error instanceof Error ? error.message : 'connectionConfig does not fit the provider';
      const failure = { kind: 'misconfigured', code: 'connection_config', message } as const;
      return { refused: this.failures.fail(credential, lease, credential.failures + 1, failure) };
    }
    const refusal = tenantRefusal(provider, credential.tenant);
    if (refusal !== undefined) return { refused: this.failures.refuse(credential, lease, `not refreshed: ${refusal}`) };
    if (provider.grant === 'refresh_token' && !credential.refreshToken) {
      const failure = { kind: 'invalid_grant', code: 'no_refresh_token', message: 'no refresh token stored' } as const;
      return { refused: this.failures.fail(credential, lease, 1, failure) };
    }
    return { provider };
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
