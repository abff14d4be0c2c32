import { createHash } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Secret, sleep } from '@tokenkeeper/common';
import {
  ContractError,
  CONNECT_DEFAULT_TTL_SECONDS,
  type ConnectRequest,
  type CredentialKey,
} from '@tokenkeeper/contracts';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Clock } from '../domain/clock.js';
import { auditRecord } from '../persistence/audit-record.js';
import { CredentialRepository } from '../persistence/credential.repository.js';
import { ConnectSessionRepository, type ConnectSession } from '../persistence/connect-session.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { assertConnectionConfig, bindProvider } from '../providers/url-placeholders.policy.js';
import { assertTenantAllowed, tenantRefusal } from '../providers/tenant-access.policy.js';
import { TOKEN_ENDPOINT } from '../providers/provider.tokens.js';
import type { IssuedToken, ProviderConfig, TokenEndpoint } from '../providers/provider.types.js';
import type { Credential } from '../domain/credential.js';
import { TokenService } from '../tokens/token.service.js';
import { htmlPage, type ConnectPage } from './connect-page.js';
import { bindingCookieName, ConnectLinkSigner, hostCookie } from './connect-link.signer.js';

/** What an audit record may say about a provider's error: a label, never its free text. */
const LABEL = /^[a-z0-9_.-]{1,64}$/;
/** The browser binding's cookie value: 32 random bytes, base64url. */
const BINDING_PATTERN = /^[A-Za-z0-9_-]{43}$/;
/**
 * A grant the provider has issued exists only in this process until it is stored: the code is
 * spent, so a failed write cannot be redone by the person. It is retried after these pauses
 * (a failover, a pool briefly exhausted) before it is given up and revoked at the provider.
 */
const STORE_RETRY_DELAYS_MS = [250, 1_000];
/** Sessions live at most an hour (CONNECT_MAX_TTL_SECONDS); a day later they only take space. */
const SESSION_RETENTION_MS = 24 * 3_600_000;
const PURGE_BATCH = 500;

/**
 * The connect flow: a one-time URL (its page and button are ConnectLinkService),
 * and the callback that turns a code into a stored credential, in the browser that pressed
 * the button only. Every step reads and writes the shared database only, so each can be
 * served by any replica.
 */
@Injectable()
export class ConnectService {
  private readonly logger = new Logger(ConnectService.name);

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly sessions: ConnectSessionRepository,
    private readonly providers: ProviderRegistry,
    @Inject(TOKEN_ENDPOINT) private readonly endpoint: TokenEndpoint,
    private readonly tokens: TokenService,
    private readonly credentials: CredentialRepository,
    private readonly clock: Clock,
    private readonly signer: ConnectLinkSigner,
  ) {}

  get redirectUri(): string {
    return `${this.config.connect.publicBaseUrl}/oauth/callback`;
  }

  async start(request: ConnectRequest): Promise<{ url: string; expiresAt: string }> {
    const provider = this.providers.get(request.provider);
    if (!provider) throw new ContractError('unknown_provider', `provider "${request.provider}" is not configured`);
    assertTenantAllowed(provider, request.tenant);
    if (!provider.authorizationUrl) {
      throw new ContractError(
        'bad_request',
        `provider "${provider.id}" has no authorizationUrl: it cannot be connected, only registered`,
      );
    }
    if (
      request.returnUrl !== undefined &&
      !(provider.allowedReturnOrigins ?? []).includes(new URL(request.returnUrl).origin)
    ) {
      throw new ContractError(
        'bad_request',
        `returnUrl: origin not in allowedReturnOrigins of provider "${provider.id}"`,
      );
    }
    assertConnectionConfig(provider, request.connectionConfig);
    const scopes = request.scopes ?? provider.scopes ?? [];
    const allowed = provider.allowedScopes ?? provider.scopes ?? [];
    const outside = scopes.filter((scope) => !allowed.includes(scope));
    if (outside.length) {
      throw new ContractError(
        'forbidden',
        `scopes: ${outside.map((s) => `"${s}"`).join(', ')} not in allowedScopes of provider "${provider.id}" (default: its scopes)`,
      );
    }
    const sessionId = this.signer.mint('session');
    const now = this.clock.now();
    const expiresAt = new Date(now + (request.ttlSeconds ?? CONNECT_DEFAULT_TTL_SECONDS) * 1000);
    const identity = { tenant: request.tenant, connection: request.connection, provider: provider.id };
    const cap = this.config.connect.maxOpenSessionsPerTenant;
    const created = await this.sessions.create(
      {
        sessionHash: sha256(sessionId),
        ...identity,
        scopes,
        returnUrl: request.returnUrl ?? null,
        metadata: request.metadata ?? {},
        connectionConfig: request.connectionConfig ?? {},
        createdAt: new Date(now),
        expiresAt,
      },
      auditRecord('connect_started', identity, this.config.replicaId),
      cap,
    );
    if (!created.created) {
      const retryAfterSeconds = Math.max(1, Math.ceil((created.nextExpiry.getTime() - now) / 1000));
      throw new ContractError(
        'rate_limited',
        `tenant "${request.tenant}" has ${cap} open connect sessions (CONNECT_MAX_OPEN_SESSIONS_PER_TENANT)`,
        retryAfterSeconds,
      );
    }
    this.logger.log({ msg: 'connect session started', ...identity, expiresAt: expiresAt.toISOString() });
    // Housekeeping rides on new sessions (no timer): what expired a day ago, whatever its state.
    void this.sessions.purgeExpiredBefore(new Date(now - SESSION_RETENTION_MS), PURGE_BATCH).catch((error: unknown) => {
      this.logger.warn({
        msg: 'purging old connect sessions failed',
        error: error instanceof Error ? error.name : typeof error,
      });
    });
    return { url: `${this.config.connect.publicBaseUrl}/connect/${sessionId}`, expiresAt: expiresAt.toISOString() };
  }

  /** `GET /oauth/callback`: the provider's answer, checked, exchanged and stored. */
  async callback(query: Record<string, unknown>, cookies: Map<string, string>): Promise<ConnectPage> {
    const state = single(query.state);
    if (!this.signer.verify('state', state))
      return htmlPage(400, 'Invalid request', 'This link is not valid: its state is missing or unknown.');
    const page = await this.completeCallback(query, state, cookies);
    // The binding has served its one purpose, whatever the outcome.
    return { ...page, cookies: [hostCookie(bindingCookieName(state), '', 0, 'Lax')] };
  }

  private async completeCallback(
    query: Record<string, unknown>,
    state: string,
    cookies: Map<string, string>,
  ): Promise<ConnectPage> {
    const stateHash = sha256(state);
    const binding = cookies.get(bindingCookieName(state));
    const browserHash = binding !== undefined && BINDING_PATTERN.test(binding) ? sha256(binding) : null;
    const now = this.clock.now();
    const taken = await this.sessions.takeForCallback(stateHash, browserHash, new Date(now));
    if (!taken) return this.refusedCallback(stateHash, now);
    const { session, sessionHash, verifier } = taken;
    const configured = this.providers.get(session.provider);
    if (!configured)
      return this.fail(sessionHash, session, 'unknown_provider', 'This connection’s provider is no longer configured.');
    let provider: ProviderConfig;
    try {
      provider = bindProvider(configured, session.connectionConfig);
    } catch {
      return this.fail(sessionHash, session, 'connection_config', 'This provider’s settings changed; start again.');
    }
    // The providers file may have changed since the session started: no code is exchanged
    // (with the operator's client secret) for a tenant the provider no longer allows.
    if (tenantRefusal(provider, session.tenant) !== undefined) {
      return this.fail(
        sessionHash,
        session,
        'forbidden',
        'This provider is no longer open to this tenant; nothing was connected.',
        403,
      );
    }

    // RFC 9207: an answer that does not come from this provider's issuer is not exchanged, so a
    // code from another authorization server (a mix-up attack) never reaches this token endpoint.
    if (provider.issuer !== undefined && single(query.iss) !== provider.issuer) {
      return this.fail(
        sessionHash,
        session,
        'iss_mismatch',
        'The answer did not come from the expected provider (issuer mismatch).',
      );
    }
    const error = single(query.error);
    if (error !== undefined) {
      const code = LABEL.test(error) ? error : 'provider_error';
      const message =
        code === 'access_denied'
          ? 'Access was denied: the consent was refused, nothing was connected.'
          : `The provider refused the request (${code}).`;
      return this.fail(sessionHash, session, code, message);
    }
    const code = single(query.code);
    if (!code)
      return this.fail(sessionHash, session, 'missing_code', 'The provider’s answer carried no authorization code.');

    const result = await this.endpoint.exchangeCode({
      provider,
      code: new Secret(code),
      codeVerifier: verifier,
      redirectUri: this.redirectUri,
    });
    if (!result.ok) {
      const label = LABEL.test(result.failure.code) ? result.failure.code : 'exchange_failed';
      return this.fail(
        sessionHash,
        session,
        label,
        'The provider did not exchange the authorization code; nothing was connected.',
      );
    }
    const issued = result.token;
    const identity = { tenant: session.tenant, connection: session.connection, provider: provider.id };
    const credential = await this.storeWithRetries(session, provider, issued);
    if (!credential) {
      await this.giveBack(session, provider, issued);
      return this.fail(
        sessionHash,
        session,
        'store_failed',
        'The grant could not be stored, so it was handed back to the provider; nothing was connected. Start again in a moment.',
        503,
      ).catch(() =>
        htmlPage(
          503,
          'Not connected',
          'The grant could not be stored; nothing was connected. Start again in a moment.',
        ),
      );
    }
    // The credential is stored: a session left `completing` by a failure here is only purged later.
    await this.sessions.finish(sessionHash, 'connected', new Date(this.clock.now())).catch((error: unknown) => {
      this.logger.warn({
        msg: 'connect: ending the session failed (the credential is stored)',
        ...identity,
        error: error instanceof Error ? error.name : typeof error,
      });
    });
    if (!issued.refreshToken && provider.grant === 'refresh_token') {
      this.logger.warn({
        msg: 'connected without a refresh token: it cannot be refreshed',
        ...identity,
        hint: presetHint(provider),
      });
    }
    this.logger.log({ msg: 'connected', ...identity, version: credential.version });
    if (session.returnUrl)
      return { kind: 'redirect', status: 303, location: withStatus(session.returnUrl, 'connected') };
    return htmlPage(
      200,
      'Connected',
      `${provider.id} is connected for ${session.tenant}/${session.connection}. You can close this window.`,
    );
  }

  /** The grant stored as `register` stores one, retried on failure; null when every try failed. */
  private async storeWithRetries(
    session: ConnectSession,
    provider: ProviderConfig,
    issued: IssuedToken,
  ): Promise<Credential | null> {
    const identity = { tenant: session.tenant, connection: session.connection, provider: provider.id };
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.tokens.storeGrant(
          session,
          provider,
          {
            accessToken: issued.accessToken,
            refreshToken: issued.refreshToken,
            tokenType: issued.tokenType,
            scope: issued.scope,
            expiresInSeconds: issued.expiresInSeconds,
            refreshTokenExpiresAt:
              issued.refreshTokenExpiresInSeconds === undefined
                ? undefined
                : new Date(issued.requestedAt.getTime() + issued.refreshTokenExpiresInSeconds * 1000),
            issuedAt: issued.requestedAt,
            extras: issued.extras,
            metadata: session.metadata,
            connectionConfig: session.connectionConfig,
          },
          [
            auditRecord('connected', identity, this.config.replicaId, {
              outcome: issued.refreshToken ? 'with_refresh_token' : 'without_refresh_token',
            }),
          ],
        );
      } catch (error) {
        const name = error instanceof Error ? error.name : typeof error;
        if (attempt >= STORE_RETRY_DELAYS_MS.length) {
          this.logger.error({
            msg: 'connect: the grant could not be stored; revoking it at the provider',
            ...identity,
            error: name,
          });
          return null;
        }
        this.logger.warn({
          msg: 'connect: storing the grant failed; retrying',
          ...identity,
          attempt: attempt + 1,
          error: name,
        });
        await sleep(STORE_RETRY_DELAYS_MS[attempt]);
      }
    }
  }

  /**
   * RFC 7009, best effort: a grant nobody holds any more is revoked rather than left alive at
   * the provider (the refresh token first: with it gone, the access token is the lesser risk).
   */
  private async giveBack(key: CredentialKey, provider: ProviderConfig, issued: IssuedToken): Promise<void> {
    if (!provider.revocationUrl) return;
    try {
      // A write whose answer was lost may have landed: only a grant the database is seen not
      // to hold is revoked (revoking a stored one would kill the credential). No read, no revoke.
      const stored = await this.credentials.find(key);
      if (stored?.accessToken?.reveal() === issued.accessToken.reveal()) return;
      if (issued.refreshToken) await this.endpoint.revoke(provider, issued.refreshToken, 'refresh_token');
      await this.endpoint.revoke(provider, issued.accessToken, 'access_token');
    } catch (error) {
      this.logger.warn({
        msg: 'connect: revoking the unstored grant failed',
        provider: provider.id,
        error: error instanceof Error ? error.name : typeof error,
      });
    }
  }

  /** A state nobody can take any more: used, expired (recorded once, as the session's end), or never issued. */
  private async refusedCallback(stateHash: Buffer, now: number): Promise<ConnectPage> {
    const session = await this.sessions.findByState(stateHash);
    if (!session) return htmlPage(400, 'Invalid request', 'This link is not valid: its state is unknown.');
    // Waiting and unexpired, yet not taken: the answer reached a browser that did not start the flow.
    if (session.status === 'redirected' && session.expiresAt.getTime() > now) {
      const identity = { tenant: session.tenant, connection: session.connection, provider: session.provider };
      const refused = await this.sessions.refuseOtherBrowser(
        stateHash,
        new Date(now),
        auditRecord('connect_failed', identity, this.config.replicaId, { code: 'browser_mismatch' }),
      );
      if (refused) {
        this.logger.warn({
          msg: 'connect failed: the answer reached another browser than the one that started it',
          ...identity,
          code: 'browser_mismatch',
        });
        return htmlPage(
          403,
          'Started in another browser',
          'This connection was started in another browser, so its answer was not accepted here and nothing was connected. If someone sent you this link, close this window: your consent would have gone to their account. Otherwise start again from your application, in one browser.',
        );
      }
    }
    if (session.status === 'redirected' && session.expiresAt.getTime() <= now) {
      await this.sessions.expireByState(
        stateHash,
        new Date(now),
        auditRecord('connect_failed', session, this.config.replicaId, { code: 'session_expired' }),
      );
      return htmlPage(410, 'Link expired', 'This connection link has expired. Start again from your application.');
    }
    return htmlPage(409, 'Already used', 'This answer was already used. Start again from your application.');
  }

  private async fail(
    sessionHash: Buffer,
    session: ConnectSession,
    code: string,
    message: string,
    status?: number,
  ): Promise<ConnectPage> {
    const identity = { tenant: session.tenant, connection: session.connection, provider: session.provider };
    await this.sessions.finish(
      sessionHash,
      'failed',
      new Date(this.clock.now()),
      auditRecord('connect_failed', identity, this.config.replicaId, { code }),
    );
    this.logger.warn({ msg: 'connect failed', ...identity, code });
    if (session.returnUrl)
      return { kind: 'redirect', status: 303, location: withStatus(session.returnUrl, 'failed', code) };
    return htmlPage(status ?? (code === 'access_denied' ? 403 : 400), 'Not connected', message);
  }
}

function withStatus(returnUrl: string, status: 'connected' | 'failed', code?: string): string {
  const url = new URL(returnUrl);
  url.searchParams.set('status', status);
  if (code) url.searchParams.set('error', code);
  return url.toString();
}

function presetHint(provider: ProviderConfig): string {
  return provider.preset === 'google'
    ? 'Google issues a refresh token only with access_type=offline and prompt=consent'
    : 'check the scopes (offline_access) and authorizeParams';
}

function single(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
