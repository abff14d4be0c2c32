import { Inject, Injectable, Logger } from '@nestjs/common';
import { Secret } from '@tokenkeeper/common';
import {
  ContractError,
  credentialId,
  encodeJson,
  type CredentialKey,
  type CredentialView,
  type TokenGetRequest,
  type TokenListRequest,
  type TokenRegisterRequest,
} from '@tokenkeeper/contracts';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { TokenEventPublisher } from '../nats/token-event.publisher.js';
import { auditRecord } from '../persistence/audit-record.js';
import { CredentialRepository } from '../persistence/credential.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { TOKEN_ENDPOINT } from '../providers/provider.tokens.js';
import type { TokenEndpoint } from '../providers/provider.types.js';
import { Clock } from '../refresh/clock.js';
import { RefreshCoordinator } from '../refresh/refresh-coordinator.service.js';
import { RefreshMetrics } from '../refresh/refresh.metrics.js';
import { scheduleRefresh } from '../refresh/refresh-policy.js';
import type { Credential } from './credential.js';
import { minTtlCapMs, TokenCache } from './token-cache.js';
import { toCredentialView, toTokenView } from './token-view.js';

const DEFAULT_MIN_TTL_SECONDS = 30;

/** What the request-reply subjects do, independent of the transport. */
@Injectable()
export class TokenService {
  private readonly logger = new Logger(TokenService.name);

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: CredentialRepository,
    private readonly providers: ProviderRegistry,
    private readonly coordinator: RefreshCoordinator,
    private readonly cache: TokenCache,
    private readonly publisher: TokenEventPublisher,
    private readonly clock: Clock,
    private readonly metrics: RefreshMetrics,
    @Inject(TOKEN_ENDPOINT) private readonly endpoint: TokenEndpoint,
  ) {}

  /**
   * The hot path: a token that is fresh enough and not reported rejected is answered from
   * memory with its pre-encoded reply. Anything else takes the slow path.
   */
  get(request: TokenGetRequest): Uint8Array | Promise<Uint8Array> {
    const cached = this.cache.get(credentialId(request));
    if (
      cached !== undefined &&
      cached.expiresAtMs - Date.now() >= Math.min((request.minTtlSeconds ?? DEFAULT_MIN_TTL_SECONDS) * 1000, cached.minTtlCapMs) &&
      (request.rejectedVersion === undefined || request.rejectedVersion < cached.version)
    ) {
      this.metrics.countCacheHit();
      return cached.reply;
    }
    return this.getSlow(request);
  }

  private async getSlow(request: TokenGetRequest): Promise<Uint8Array> {
    const started = performance.now();
    let outcome = 'error';
    try {
      const credential = await this.resolve(request);
      const view = toTokenView(credential);
      if (credential.status === 'active' || credential.status === 'failing') this.cache.put(view, issuedAtMs(credential));
      outcome = 'ok';
      return encodeJson({ ok: true, token: view });
    } finally {
      this.metrics.observeGet(outcome, (performance.now() - started) / 1000);
    }
  }

  private async resolve(request: TokenGetRequest): Promise<Credential> {
    const minTtlMs = (request.minTtlSeconds ?? DEFAULT_MIN_TTL_SECONDS) * 1000;
    let credential = await this.find(request);
    let rejected = request.rejectedVersion;
    if (rejected !== undefined && rejected > credential.version) {
      // The caller saw a version our read predates (another replica just committed it): read
      // again. A version that does not exist at all names nothing to refresh, so it is ignored
      // rather than allowed to cause a refresh per request.
      credential = await this.find(request);
      if (rejected > credential.version) rejected = undefined;
    }
    if (this.serves(credential, minTtlMs, rejected)) return credential;

    const live = credential.status === 'active' || credential.status === 'failing';
    const inBackoff =
      credential.status === 'failing' && credential.nextRefreshAt !== null && credential.nextRefreshAt.getTime() > this.clock.now();
    if (live && !inBackoff) {
      // Whatever the reason (expired, not valid for minTtl, or this very version rejected),
      // the stored version is the stale one: one refresh past it, shared by every caller.
      const result = await this.coordinator.refresh(request, credential.version);
      credential = result.credential;
      if (this.serves(credential, Math.min(minTtlMs, 1_000), rejected)) return credential;
    }
    // The refresh failed, is backing off, or can no longer happen (reauth_required). A token
    // that is still valid (and was not reported rejected) beats an error (SPEC §3); a revoked
    // credential has no token left to serve.
    if (this.serves(credential, 0, rejected)) return credential;
    this.refusesIfDead(credential);
    throw new ContractError(
      credential.lastError?.code === 'unavailable' ? 'unavailable' : 'refresh_failed',
      credential.lastError ? `refresh failed: ${credential.lastError.message}` : 'no valid token; refresh pending',
    );
  }

  /** A stored token can be served if it has an access token valid for `minTtlMs` and was not reported rejected. */
  private serves(credential: Credential, minTtlMs: number, rejectedVersion: number | undefined): boolean {
    if (!credential.accessToken || credential.status === 'revoked') return false;
    if (rejectedVersion !== undefined && rejectedVersion >= credential.version) return false;
    if (credential.expiresAt === null) return true;
    const expiresAtMs = credential.expiresAt.getTime();
    return expiresAtMs - this.clock.now() >= Math.min(minTtlMs, minTtlCapMs(expiresAtMs, issuedAtMs(credential)));
  }

  private refusesIfDead(credential: Credential): void {
    if (credential.status === 'revoked') throw new ContractError('revoked', 'the credential was revoked');
    if (credential.status === 'reauth_required') {
      throw new ContractError('reauth_required', 'the provider no longer accepts the refresh token; re-register the credential');
    }
  }

  async register(request: TokenRegisterRequest): Promise<CredentialView> {
    const provider = this.providers.get(request.provider);
    if (!provider) throw new ContractError('unknown_provider', `provider "${request.provider}" is not configured`);
    const issuedAt = new Date(this.clock.now());
    const accessToken = Secret.of(request.accessToken);
    const refreshToken = Secret.of(request.refreshToken);
    const lifetime =
      request.expiresIn ??
      (request.expiresAt ? (Date.parse(request.expiresAt) - issuedAt.getTime()) / 1000 : provider.defaultTtlSeconds);
    const schedule = scheduleRefresh({
      issuedAt,
      lifetimeSeconds: accessToken ? lifetime : undefined,
      threshold: provider.threshold,
      minMarginSeconds: this.config.refresh.minMarginSeconds,
      random: this.clock.random(),
    });
    const canRefresh = provider.grant === 'client_credentials' || refreshToken !== undefined;
    // Without an access token (or with one already expired) the first refresh is due now. An
    // expiresAt in the past is a known expiry, not "no expiry": scheduleRefresh has no schedule
    // for a lifetime <= 0, so the expired token's expiry is kept here.
    const expired = accessToken !== undefined && lifetime !== undefined && lifetime <= 0;
    const expiresAt = !accessToken ? null : expired ? new Date(issuedAt.getTime() + lifetime! * 1000) : schedule.expiresAt;
    const nextRefreshAt = !canRefresh ? null : !accessToken || expired ? issuedAt : schedule.nextRefreshAt;
    const audit = auditRecord('registered', { ...request, provider: provider.id }, this.config.replicaId, {
      outcome: accessToken ? 'with_access_token' : 'refresh_pending',
    });
    const credential = await this.repository.register(
      {
        tenant: request.tenant,
        connection: request.connection,
        provider: provider.id,
        accessToken,
        refreshToken,
        tokenType: request.tokenType ?? 'Bearer',
        scope: request.scope,
        issuedAt,
        expiresAt,
        nextRefreshAt,
      },
      [audit],
    );
    if (credential.accessToken) {
      this.cache.put(toTokenView(credential), issuedAtMs(credential));
      this.publisher.issued('registered', credential, audit.event_id);
    } else {
      // No token yet: whatever is cached belongs to the grant this registration replaced.
      this.cache.evict(credentialId(credential), credential.version);
    }
    return toCredentialView(credential);
  }

  async refreshNow(key: CredentialKey): Promise<CredentialView> {
    const credential = await this.find(key);
    this.refusesIfDead(credential);
    const result = await this.coordinator.refresh(key);
    if (result.failure) {
      // reauth_required is terminal and must not be reported as the retryable refresh_failed.
      const code = result.failure.code === 'unavailable' || result.failure.code === 'reauth_required' ? result.failure.code : 'refresh_failed';
      throw new ContractError(code, result.failure.message);
    }
    return toCredentialView(result.credential);
  }

  async revoke(key: CredentialKey): Promise<{ providerRevoked: boolean }> {
    const found = await this.find(key);
    const audit = auditRecord('revoked', found, this.config.replicaId);
    const result = await this.repository.revoke(key, audit);
    if (!result) throw new ContractError('not_found', `no credential ${key.tenant}/${key.connection}`);
    this.cache.evict(credentialId(key), result.after.version);
    this.publisher.revoked(result.after, audit.event_id);
    return { providerRevoked: await this.revokeAtProvider(result.before) };
  }

  /** RFC 7009, best effort: the credential is already revoked here whatever the provider says. */
  private async revokeAtProvider(before: Credential): Promise<boolean> {
    const provider = this.providers.get(before.provider);
    if (!provider?.revocationUrl) return false;
    try {
      if (before.refreshToken) await this.endpoint.revoke(provider, before.refreshToken, 'refresh_token');
      if (before.accessToken) await this.endpoint.revoke(provider, before.accessToken, 'access_token');
      return true;
    } catch (error) {
      this.logger.warn({ msg: 'provider revocation failed', provider: provider.id, error: (error as Error).message });
      return false;
    }
  }

  async describe(key: CredentialKey): Promise<CredentialView> {
    return toCredentialView(await this.find(key));
  }

  async list(request: TokenListRequest): Promise<{ items: CredentialView[]; nextCursor?: string }> {
    const limit = request.limit ?? 100;
    const after = request.cursor ? decodeCursor(request.cursor) : undefined;
    const rows = await this.repository.list({ tenant: request.tenant, status: request.status, after, limit: limit + 1 });
    const items = rows.slice(0, limit).map(toCredentialView);
    const last = items.at(-1);
    return rows.length > limit && last ? { items, nextCursor: encodeCursor(last) } : { items };
  }

  private async find(key: CredentialKey): Promise<Credential> {
    const credential = await this.repository.find(key);
    if (!credential) throw new ContractError('not_found', `no credential ${key.tenant}/${key.connection}`);
    return credential;
  }
}

function issuedAtMs(credential: Credential): number {
  return (credential.issuedAt ?? credential.updatedAt).getTime();
}

function encodeCursor(key: CredentialKey): string {
  return Buffer.from(JSON.stringify([key.tenant, key.connection])).toString('base64url');
}

function decodeCursor(cursor: string): CredentialKey {
  try {
    const [tenant, connection] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (typeof tenant === 'string' && typeof connection === 'string') return { tenant, connection };
  } catch {
    // fall through
  }
  throw new ContractError('bad_request', 'cursor is not one this service issued');
}
