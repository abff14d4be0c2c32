import type { Logger } from '@nestjs/common';
import type { Credential } from '../domain/credential.js';
import type { RefreshMetrics } from '../metrics/refresh.metrics.js';
import type { ProviderConfig, TokenEndpoint, TokenResult } from '../providers/provider.types.js';
import { FairShareLimiter } from './fair-share.limiter.js';
import type { LeaseKeeper } from './lease-keeper.js';

/** What became of one token request. */
export type RequestAnswer =
  /** Never sent (shutting down, or the lease could not be confirmed): the refresh token is untouched. */
  | { kind: 'unsent' }
  /** Stopped after it was sent (lease lost, or cancelled at shutdown): nothing may be written, the lease expires. */
  | { kind: 'abandoned' }
  | { kind: 'answered'; result: TokenResult };

export interface TokenRequestOptions {
  /** The hard cap of one request, however long it waited for a slot (REFRESH_TIMEOUT_MS). */
  timeoutMs: number;
  /** A request is not started with less confirmed lease than this. */
  minWindowMs: number;
  /** Aborted when the shutdown grace period is over: cancels the requests still in flight. */
  cancelled: AbortSignal;
  /** True once shutdown began: no request starts any more. */
  draining: () => boolean;
}

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

/**
 * The provider call step: waits for one of the provider's request slots (taken in turns by
 * the tenants with work waiting), sends the token request under the lease, and tells an
 * answer from a request that was stopped for the lease's or shutdown's sake.
 */
export class TokenRequestRunner {
  /** Per provider, its maxConcurrency request slots, taken in turns by the tenants with work waiting. */
  private readonly limits = new Map<string, FairShareLimiter>();

  constructor(
    private readonly endpoint: TokenEndpoint,
    private readonly metrics: RefreshMetrics,
    private readonly logger: Logger,
    private readonly options: TokenRequestOptions,
  ) {}

  async request(credential: Credential, provider: ProviderConfig, keeper: LeaseKeeper): Promise<RequestAnswer> {
    let started = performance.now();
    const result = await this.limitFor(provider).run(credential.tenant, async () => {
      // While the work waited for a slot, the keeper kept the lease alive; a lease it could
      // not confirm (or shutting down) means: give it back unused rather than race it.
      if (this.options.draining() || keeper.lost.aborted || keeper.remainingMs < this.options.minWindowMs) return null;
      started = performance.now();
      return this.send(credential, provider, keeper);
    });
    if (result === null) return { kind: 'unsent' };
    if (this.abandoned(result, credential, keeper)) return { kind: 'abandoned' };
    this.metrics.observeRequest(provider.id, (performance.now() - started) / 1000);
    return { kind: 'answered', result };
  }

  /**
   * The full timeout, however long the work was queued: the keeper extends the lease
   * while the request runs and stops it only if the lease can no longer be confirmed.
   */
  private async send(credential: Credential, provider: ProviderConfig, keeper: LeaseKeeper): Promise<TokenResult> {
    const stop = requestSignal(this.options.timeoutMs, this.options.cancelled, keeper.lost);
    try {
      return await this.endpoint.requestToken({
        provider,
        refreshToken: provider.grant === 'refresh_token' ? credential.refreshToken : undefined,
        signal: stop.signal,
      });
    } finally {
      stop.release();
    }
  }

  /** A request stopped after it was sent, for the lease's or shutdown's sake: not the provider's fault. */
  private abandoned(result: TokenResult, credential: Credential, keeper: LeaseKeeper): boolean {
    if (result.ok || result.failure.code !== 'aborted') return false;
    if (keeper.lost.aborted) {
      // Stopped because this replica could no longer be sure of its lease: another replica
      // may hold it now. Nothing can be written under it; the lease is left to expire.
      this.logger.error({
        msg: 'token request stopped: the lease could not be kept; the provider may have rotated the refresh token',
        tenant: credential.tenant,
        connection: credential.connection,
      });
      return true;
    }
    // Cancelled at shutdown after it was sent: the provider may still be processing it
    // (and rotating the refresh token). Giving the lease back now would let another
    // replica present the same refresh token while this request is still in flight, so
    // the lease is kept and simply expires. Nothing recorded.
    return this.options.cancelled.aborted;
  }

  private limitFor(provider: ProviderConfig): FairShareLimiter {
    let limit = this.limits.get(provider.id);
    if (!limit) {
      limit = new FairShareLimiter(provider.maxConcurrency);
      this.limits.set(provider.id, limit);
    }
    return limit;
  }
}
