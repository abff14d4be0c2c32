import { Inject, Injectable, Logger } from '@nestjs/common';
import { credentialId, type CredentialKey, type ErrorCode } from '@tokenkeeper/contracts';
import pLimit, { type LimitFunction } from 'p-limit';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { TokenEventPublisher } from '../nats/token-event.publisher.js';
import { auditRecord } from '../persistence/audit-record.js';
import { CredentialRepository, type FailureWrite } from '../persistence/credential.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { TOKEN_ENDPOINT } from '../providers/provider.tokens.js';
import type { ProviderConfig, TokenEndpoint, TokenFailure } from '../providers/provider.types.js';
import type { Credential, LeasedCredential } from '../tokens/credential.js';
import { TokenCache } from '../tokens/token-cache.js';
import { toTokenView } from '../tokens/token-view.js';
import { Clock } from './clock.js';
import { RefreshMetrics } from './refresh.metrics.js';
import { retryDelayMs, scheduleRefresh } from './refresh-policy.js';

export type RefreshOutcome =
  | { kind: 'refreshed'; credential: Credential }
  | { kind: 'failed'; credential: Credential; code: ErrorCode; message: string }
  /** Our lease was taken over or the version moved: someone else's write stands. */
  | { kind: 'superseded' };

/** Time kept in hand between the end of a token request and the end of its lease. */
const LEASE_SAFETY_MS = 2_000;

/**
 * Refreshes one leased credential: token request (bounded per provider), new schedule,
 * fenced write with its audit records, then events and cache. Never two requests with
 * the same refresh token: the lease makes this replica the only one that may present
 * it, the request is cut off before the lease ends, and the write lands only while the
 * lease still holds.
 */
@Injectable()
export class RefreshService {
  private readonly logger = new Logger(RefreshService.name);
  private readonly limits = new Map<string, LimitFunction>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: CredentialRepository,
    private readonly providers: ProviderRegistry,
    @Inject(TOKEN_ENDPOINT) private readonly endpoint: TokenEndpoint,
    private readonly publisher: TokenEventPublisher,
    private readonly cache: TokenCache,
    private readonly clock: Clock,
    private readonly metrics: RefreshMetrics,
  ) {}

  async refreshLeased({ credential, lease }: LeasedCredential): Promise<RefreshOutcome> {
    const leaseDeadline = performance.now() + this.config.refresh.leaseSeconds * 1000 - LEASE_SAFETY_MS;
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
      if (remaining < 1_000) return null; // queued too long: let the lease lapse rather than race it
      return this.endpoint.requestToken({
        provider,
        refreshToken: provider.grant === 'refresh_token' ? credential.refreshToken : undefined,
        signal: AbortSignal.timeout(Math.min(remaining, this.config.refresh.requestTimeoutMs)),
      });
    });
    if (result === null) {
      await this.repository.releaseLease(credential, lease);
      return { kind: 'superseded' };
    }
    this.metrics.observeRequest(provider.id, (performance.now() - started) / 1000);
    if (!result.ok) return this.fail(credential, lease, credential.failures + 1, result.failure, provider);

    const token = result.token;
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
    this.cache.put(toTokenView(committed), token.requestedAt.getTime());
    this.publisher.issued('refreshed', committed, audit.event_id);
    return { kind: 'refreshed', credential: committed };
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
    this.cache.interrupt(credentialId(credential));
    this.publisher.failed(committed, {
      code: write.lastError.code,
      message: write.lastError.message,
      attempt,
      retryAt: write.nextRefreshAt,
    }, audit.event_id);
    return { kind: 'failed', credential: committed, code: write.lastError.code, message: write.lastError.message };
  }

  private limitFor(provider: ProviderConfig): LimitFunction {
    let limit = this.limits.get(provider.id);
    if (!limit) {
      limit = pLimit(provider.maxConcurrency);
      this.limits.set(provider.id, limit);
    }
    return limit;
  }

  /** Credentials waiting for a provider slot, for metrics and shutdown. */
  pendingRequests(): number {
    let pending = 0;
    for (const limit of this.limits.values()) pending += limit.activeCount + limit.pendingCount;
    return pending;
  }

  isKnownProvider(key: CredentialKey & { provider: string }): boolean {
    return this.providers.get(key.provider) !== undefined;
  }
}
