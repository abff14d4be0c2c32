import { Inject, Injectable } from '@nestjs/common';
import { Secret } from '@tokenkeeper/common';
import {
  ContractError,
  credentialId,
  DEFAULT_MIN_TTL_SECONDS,
  type CredentialKey,
  type CredentialView,
  type TokenGetRequest,
  type TokenRegisterRequest,
} from '@tokenkeeper/contracts';
import type { ReplyWithHeaders } from '@tokenkeeper/nats';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Clock } from '../domain/clock.js';
import type { Credential } from '../domain/credential.js';
import {
  DELIVERY_MARGIN_MS,
  isLive,
  issuedAtMs,
  minTtlCapMs,
  validFor,
  wantedValidityMs,
} from '../domain/token-validity.js';
import { toCredentialView, toTokenView } from '../domain/token-view.js';
import { ReplyCache } from '../events/reply-cache.js';
import { TokenChangeNotifier } from '../events/token-change.notifier.js';
import { auditRecord, type PendingAuditRecord } from '../persistence/audit-record.js';
import { CredentialRepository } from '../persistence/credential.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import type { ProviderConfig } from '../providers/provider.types.js';
import { ProviderRevocation } from '../providers/provider-revocation.client.js';
import { assertConnectionConfig } from '../providers/url-placeholders.policy.js';
import { assertTenantAllowed, tenantRefusal } from '../providers/tenant-access.policy.js';
import { RefreshCoordinator } from '../refresh/refresh-coordinator.service.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import {
  DEFAULT_EXPIRY_WARNING_DAYS,
  DEFAULT_KEEP_ALIVE_SECONDS,
  earlier,
  expiryWarningAt,
  onDemandWaitMs,
  scheduleRegistration,
} from '../refresh/refresh-policy.js';

/** A grant to store: what `register` was given, or what a code exchange returned. */
export interface Grant {
  accessToken?: Secret;
  refreshToken?: Secret;
  tokenType?: string;
  scope?: string;
  expiresInSeconds?: number;
  expiresAt?: Date;
  /** The refresh token's absolute expiry, when the registration or the token response gave one. */
  refreshTokenExpiresAt?: Date;
  /** Lifetimes count from here. */
  issuedAt: Date;
  /** Token-response fields named by the provider's `tokenFields`. */
  extras?: Record<string, string>;
  metadata?: Record<string, string>;
  connectionConfig?: Record<string, string>;
}

/** What the request-reply subjects do, independent of the transport. */
@Injectable()
export class TokenService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: CredentialRepository,
    private readonly providers: ProviderRegistry,
    private readonly coordinator: RefreshCoordinator,
    private readonly cache: ReplyCache,
    private readonly notifier: TokenChangeNotifier,
    private readonly revocation: ProviderRevocation,
    private readonly clock: Clock,
    private readonly metrics: RefreshMetrics,
  ) {}

  /**
   * The hot path: a token that is fresh enough and not reported rejected is answered from
   * memory with its pre-encoded, pre-signed reply (the cached object itself: nothing is
   * signed, encoded or allocated here, except once per re-sign age). Anything else takes the slow path.
   */
  get(request: TokenGetRequest): ReplyWithHeaders | Promise<ReplyWithHeaders> {
    const cached = this.cache.get(credentialId(request));
    const now = this.clock.now();
    if (
      cached !== undefined &&
      validFor(
        cached.expiresAtMs,
        cached.minTtlCapMs,
        wantedValidityMs(request.minTtlSeconds ?? DEFAULT_MIN_TTL_SECONDS),
        now,
      ) &&
      (request.rejectedVersion === undefined || request.rejectedVersion < cached.version)
    ) {
      this.metrics.countCacheHit();
      // Re-signed here only when its signature reached the re-sign age (a comparison otherwise).
      return cached.replyAt(now);
    }
    return this.getSlow(request);
  }

  private async getSlow(request: TokenGetRequest): Promise<ReplyWithHeaders> {
    const started = performance.now();
    let outcome = 'error';
    try {
      const credential = await this.resolve(request);
      outcome = 'ok';
      return this.replyFor(credential);
    } finally {
      this.metrics.observeGet(outcome, (performance.now() - started) / 1000);
    }
  }

  /**
   * The reply for a credential about to be served: a refresh this replica just committed
   * (or an event) has put it in the cache already; otherwise it is cached now. Either way the
   * view is built, encoded and signed once.
   */
  private replyFor(credential: Credential): ReplyWithHeaders {
    const cached = this.cache.get(credentialId(credential));
    if (cached !== undefined && cached.version === credential.version) return cached.reply;
    const view = toTokenView(credential);
    const stored = isLive(credential) ? this.cache.put(view, issuedAtMs(credential)) : undefined;
    return stored?.reply ?? this.cache.replyFor(view);
  }

  private async resolve(request: TokenGetRequest): Promise<Credential> {
    const minTtlMs = wantedValidityMs(request.minTtlSeconds ?? DEFAULT_MIN_TTL_SECONDS);
    let credential = await this.find(request);
    // Before any token is served or refreshed: a provider the operator withdrew from this
    // tenant serves none of its tokens, not even one still valid.
    this.refusesIfWithdrawn(credential);
    let rejected = request.rejectedVersion;
    if (rejected !== undefined && rejected > credential.version) {
      // The caller saw a version our read predates (another replica just committed it): read
      // again. A version that does not exist at all names nothing to refresh, so it is ignored
      // rather than allowed to cause a refresh per request.
      credential = await this.find(request);
      if (rejected > credential.version) rejected = undefined;
    }
    if (this.serves(credential, minTtlMs, rejected)) return credential;

    const inBackoff =
      credential.status === 'failing' &&
      credential.nextRefreshAt !== null &&
      credential.nextRefreshAt.getTime() > this.clock.now();
    if (isLive(credential) && !inBackoff) {
      // The row just read carries the last refresh at the provider: the budget costs no
      // extra round trip, and holds across replicas.
      const waitMs = onDemandWaitMs(
        credential,
        this.providers.get(credential.provider)?.onDemandCooldownSeconds ?? 0,
        this.clock.now(),
      );
      if (waitMs > 0) return this.withinBudget(credential, rejected, waitMs);
      // Whatever the reason (expired, not valid for minTtl, or this very version rejected),
      // the stored version is the stale one: one refresh past it, shared by every caller.
      const result = await this.coordinator.refresh(request, credential.version);
      credential = result.credential;
      if (this.serves(credential, Math.min(minTtlMs, 1_000), rejected)) return credential;
    }
    // The refresh failed, is backing off, or can no longer happen (reauth_required). A token
    // that is still valid (and was not reported rejected) beats an error; a revoked
    // credential has no token left to serve.
    if (this.serves(credential, 0, rejected)) return credential;
    this.refusesIfDead(credential);
    throw new ContractError(
      credential.lastError?.code === 'unavailable' ? 'unavailable' : 'refresh_failed',
      credential.lastError ? `refresh failed: ${credential.lastError.message}` : 'no valid token; refresh pending',
    );
  }

  /**
   * An on-demand refresh the credential's budget does not allow yet: a caller that only
   * wanted more validity gets the current token while it is still valid (down to the
   * delivery margin); one that reported the current version rejected, or whose token has
   * run out, is told when to ask again. Never an expired token.
   */
  private withinBudget(credential: Credential, rejectedVersion: number | undefined, waitMs: number): Credential {
    if (rejectedVersion === undefined && this.serves(credential, DELIVERY_MARGIN_MS, undefined)) return credential;
    this.refusesIfDead(credential);
    const seconds = Math.max(1, Math.ceil(waitMs / 1000));
    this.metrics.countOnDemandRateLimited(credential.provider);
    throw new ContractError(
      'rate_limited',
      `${rejectedVersion === undefined ? 'no token valid long enough' : 'the current version was reported rejected'}; ` +
        `this credential was refreshed at the provider moments ago; ask again in ${seconds} s`,
      seconds,
    );
  }

  /** A stored token can be served if it has an access token valid for `minTtlMs` and was not reported rejected. */
  private serves(credential: Credential, minTtlMs: number, rejectedVersion: number | undefined): boolean {
    if (!credential.accessToken || credential.status === 'revoked') return false;
    if (rejectedVersion !== undefined && rejectedVersion >= credential.version) return false;
    if (credential.expiresAt === null) return true;
    const expiresAtMs = credential.expiresAt.getTime();
    return validFor(expiresAtMs, minTtlCapMs(expiresAtMs, issuedAtMs(credential)), minTtlMs, this.clock.now());
  }

  private refusesIfDead(credential: Credential): void {
    if (credential.status === 'revoked') throw new ContractError('revoked', 'the credential was revoked');
    if (credential.status === 'reauth_required') {
      throw new ContractError(
        'reauth_required',
        'the provider no longer accepts the refresh token; re-register the credential',
      );
    }
  }

  /** `forbidden` for a credential whose provider no longer allows its tenant (the providers file changed). */
  private refusesIfWithdrawn(credential: Credential): void {
    const provider = this.providers.get(credential.provider);
    if (provider) assertTenantAllowed(provider, credential.tenant);
  }

  async register(request: TokenRegisterRequest): Promise<CredentialView> {
    const provider = this.providers.get(request.provider);
    if (!provider) throw new ContractError('unknown_provider', `provider "${request.provider}" is not configured`);
    assertTenantAllowed(provider, request.tenant);
    assertConnectionConfig(provider, request.connectionConfig);
    const credential = await this.storeGrant(request, provider, {
      accessToken: Secret.of(request.accessToken),
      refreshToken: Secret.of(request.refreshToken),
      tokenType: request.tokenType,
      scope: request.scope,
      expiresInSeconds: request.expiresIn,
      expiresAt: request.expiresAt ? new Date(request.expiresAt) : undefined,
      refreshTokenExpiresAt: request.refreshTokenExpiresAt ? new Date(request.refreshTokenExpiresAt) : undefined,
      issuedAt: new Date(this.clock.now()),
      metadata: request.metadata,
      connectionConfig: request.connectionConfig,
    });
    return toCredentialView(credential);
  }

  /**
   * Stores a new grant for a credential, replacing any earlier one (a new version), with its
   * `registered` record and event: the one path of `register` and of the connect flow, whose
   * own records (`connected`) commit in the same statement.
   */
  async storeGrant(
    key: CredentialKey,
    provider: ProviderConfig,
    grant: Grant,
    extraAudit: PendingAuditRecord[] = [],
  ): Promise<Credential> {
    const { accessToken, refreshToken, issuedAt } = grant;
    const schedule = scheduleRegistration({
      registeredAt: issuedAt,
      hasAccessToken: accessToken !== undefined,
      canRefresh: provider.grant === 'client_credentials' || refreshToken !== undefined,
      expiresInSeconds: grant.expiresInSeconds,
      expiresAt: grant.expiresAt,
      defaultTtlSeconds: provider.defaultTtlSeconds,
      threshold: provider.threshold,
      minMarginSeconds: this.config.refresh.minMarginSeconds,
      random: this.clock.random(),
      keepAliveSeconds: provider.keepAliveSeconds ?? DEFAULT_KEEP_ALIVE_SECONDS,
    });
    const { expiresAt } = schedule;
    const refreshTokenExpiresAt = refreshToken ? (grant.refreshTokenExpiresAt ?? null) : null;
    // The refresh that falls due at the warning time publishes `token.expiring` (RefreshService).
    const warnAt = expiryWarningAt(
      refreshTokenExpiresAt,
      null,
      provider.expiryWarningDays ?? DEFAULT_EXPIRY_WARNING_DAYS,
    );
    const nextRefreshAt =
      schedule.nextRefreshAt && warnAt ? earlier(schedule.nextRefreshAt, warnAt) : schedule.nextRefreshAt;
    const identity = { tenant: key.tenant, connection: key.connection, provider: provider.id };
    const audit = auditRecord('registered', identity, this.config.replicaId, {
      outcome: accessToken ? 'with_access_token' : 'refresh_pending',
    });
    const change = await this.repository.register(
      {
        ...identity,
        accessToken,
        refreshToken,
        tokenType: grant.tokenType ?? 'Bearer',
        scope: grant.scope,
        issuedAt,
        expiresAt,
        nextRefreshAt,
        refreshTokenExpiresAt,
        extras: grant.extras,
        metadata: grant.metadata,
        connectionConfig: grant.connectionConfig,
      },
      [audit, ...extraAudit],
    );
    this.notifier.committed(change);
    return change.credential;
  }

  async refreshNow(key: CredentialKey): Promise<CredentialView> {
    const credential = await this.find(key);
    this.refusesIfDead(credential);
    this.refusesIfWithdrawn(credential);
    const result = await this.coordinator.refresh(key);
    if (result.failure) {
      // reauth_required is terminal and must not be reported as the retryable refresh_failed.
      const passed = ['unavailable', 'reauth_required', 'forbidden'];
      const code = passed.includes(result.failure.code) ? result.failure.code : 'refresh_failed';
      throw new ContractError(code, result.failure.message);
    }
    return toCredentialView(result.credential);
  }

  async revoke(key: CredentialKey): Promise<{ providerRevoked: boolean }> {
    const found = await this.find(key);
    const audit = auditRecord('revoked', found, this.config.replicaId);
    const result = await this.repository.revoke(key, audit);
    if (!result) throw new ContractError('not_found', `no credential ${key.tenant}/${key.connection}`);
    this.notifier.committed(result.change);
    return { providerRevoked: await this.revocation.revokeTokensOf(result.before) };
  }

  /**
   * A live credential whose provider no longer allows its tenant says so at once, before its
   * next due refresh has recorded the refusal (the status is then `failing`).
   */
  async describe(key: CredentialKey): Promise<CredentialView> {
    const credential = await this.find(key);
    const view = toCredentialView(credential);
    const provider = this.providers.get(credential.provider);
    const refusal = provider && isLive(credential) ? tenantRefusal(provider, credential.tenant) : undefined;
    if (refusal !== undefined) view.lastError = { code: 'forbidden', message: `not refreshed: ${refusal}` };
    return view;
  }

  private async find(key: CredentialKey): Promise<Credential> {
    const credential = await this.repository.find(key);
    if (!credential) throw new ContractError('not_found', `no credential ${key.tenant}/${key.connection}`);
    return credential;
  }
}
