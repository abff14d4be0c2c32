import { createHash, randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Secret, sleep } from '@tokenkeeper/common';
import { ContractError, CONNECT_DEFAULT_TTL_SECONDS, type ConnectRequest, type CredentialKey } from '@tokenkeeper/contracts';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Clock } from '../domain/clock.js';
import { auditRecord } from '../persistence/audit-record.js';
import { CredentialRepository } from '../persistence/credential.repository.js';
import { ConnectSessionRepository, type ConnectSession } from '../persistence/connect-session.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import { TOKEN_ENDPOINT } from '../providers/provider.tokens.js';
import type { IssuedToken, ProviderConfig, TokenEndpoint } from '../providers/provider.types.js';
import type { Credential } from '../domain/credential.js';
import { TokenService } from '../tokens/token.service.js';
import { htmlPage, type ConnectPage } from './connect-page.js';

/** 32 random bytes, base64url: the session id in the URL, the state, the PKCE verifier (RFC 7636 §4.1). */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
/** What an audit record may say about a provider's error: a label, never its free text. */
const LABEL = /^[a-z0-9_.-]{1,64}$/;
/** Set by Tokenkeeper on the authorization request; a provider's `authorizeParams` cannot override them. */
const OWN_PARAMS = ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'code_challenge', 'code_challenge_method'];
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
 * The connect flow (SPEC §12): a one-time URL, the redirect to the provider with state and
 * PKCE, and the callback that turns a code into a stored credential. Every step reads and
 * writes the shared database only, so each can be served by any replica.
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
  ) {}

  get redirectUri(): string {
    return `${this.config.connect.publicBaseUrl}/oauth/callback`;
  }

  async start(request: ConnectRequest): Promise<{ url: string; expiresAt: string }> {
    const provider = this.providers.get(request.provider);
    if (!provider) throw new ContractError('unknown_provider', `provider "${request.provider}" is not configured`);
    if (!provider.authorizationUrl) {
      throw new ContractError('bad_request', `provider "${provider.id}" has no authorizationUrl: it cannot be connected, only registered`);
    }
    if (request.returnUrl !== undefined && !(provider.allowedReturnOrigins ?? []).includes(new URL(request.returnUrl).origin)) {
      throw new ContractError('bad_request', `returnUrl: origin not in allowedReturnOrigins of provider "${provider.id}"`);
    }
    const sessionId = randomToken();
    const now = this.clock.now();
    const expiresAt = new Date(now + (request.ttlSeconds ?? CONNECT_DEFAULT_TTL_SECONDS) * 1000);
    const identity = { tenant: request.tenant, connection: request.connection, provider: provider.id };
    await this.sessions.create(
      {
        sessionHash: sha256(sessionId),
        ...identity,
        scopes: request.scopes ?? provider.scopes ?? [],
        returnUrl: request.returnUrl ?? null,
        createdAt: new Date(now),
        expiresAt,
      },
      auditRecord('connect_started', identity, this.config.replicaId),
    );
    this.logger.log({ msg: 'connect session started', ...identity, expiresAt: expiresAt.toISOString() });
    // Housekeeping rides on new sessions (no timer): what expired a day ago, whatever its state.
    void this.sessions.purgeExpiredBefore(new Date(now - SESSION_RETENTION_MS), PURGE_BATCH).catch((error: unknown) => {
      this.logger.warn({ msg: 'purging old connect sessions failed', error: error instanceof Error ? error.name : typeof error });
    });
    return { url: `${this.config.connect.publicBaseUrl}/connect/${sessionId}`, expiresAt: expiresAt.toISOString() };
  }

  /** `GET /connect/<session>`: once per session, to the provider with a fresh state and PKCE challenge. */
  async redirect(sessionId: string): Promise<ConnectPage> {
    if (!TOKEN_PATTERN.test(sessionId)) return unknownLink();
    const state = randomToken();
    const verifier = new Secret(randomToken());
    const sessionHash = sha256(sessionId);
    const session = await this.sessions.beginRedirect(sessionHash, sha256(state), verifier, new Date(this.clock.now()));
    if (!session) return refusedLink(await this.sessions.find(sessionHash), this.clock.now());
    const provider = this.providers.get(session.provider);
    if (!provider?.authorizationUrl) return this.fail(sessionHash, session, 'unknown_provider', 'This connection’s provider is no longer configured.');

    const url = new URL(provider.authorizationUrl);
    for (const [key, value] of Object.entries(provider.authorizeParams ?? {})) if (!OWN_PARAMS.includes(key)) url.searchParams.set(key, value);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', provider.clientId);
    url.searchParams.set('redirect_uri', this.redirectUri);
    if (session.scopes.length) url.searchParams.set('scope', session.scopes.join(' '));
    url.searchParams.set('state', state);
    url.searchParams.set('code_challenge', createHash('sha256').update(verifier.reveal()).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    this.logger.log({ msg: 'connect: sent to the provider', tenant: session.tenant, connection: session.connection, provider: provider.id });
    return { kind: 'redirect', status: 302, location: url.toString() };
  }

  /** `GET /oauth/callback`: the provider's answer, checked, exchanged and stored. */
  async callback(query: Record<string, unknown>): Promise<ConnectPage> {
    const state = single(query.state);
    if (state === undefined || !TOKEN_PATTERN.test(state)) return htmlPage(400, 'Invalid request', 'This link is not valid: its state is missing or unknown.');
    const stateHash = sha256(state);
    const now = this.clock.now();
    const taken = await this.sessions.takeForCallback(stateHash, new Date(now));
    if (!taken) return this.refusedCallback(stateHash, now);
    const { session, sessionHash, verifier } = taken;
    const provider = this.providers.get(session.provider);
    if (!provider) return this.fail(sessionHash, session, 'unknown_provider', 'This connection’s provider is no longer configured.');

    // RFC 9207: an answer that does not come from this provider's issuer is not exchanged, so a
    // code from another authorization server (a mix-up attack) never reaches this token endpoint.
    if (provider.issuer !== undefined && single(query.iss) !== provider.issuer) {
      return this.fail(sessionHash, session, 'iss_mismatch', 'The answer did not come from the expected provider (issuer mismatch).');
    }
    const error = single(query.error);
    if (error !== undefined) {
      const code = LABEL.test(error) ? error : 'provider_error';
      const message = code === 'access_denied' ? 'Access was denied: the consent was refused, nothing was connected.' : `The provider refused the request (${code}).`;
      return this.fail(sessionHash, session, code, message);
    }
    const code = single(query.code);
    if (!code) return this.fail(sessionHash, session, 'missing_code', 'The provider’s answer carried no authorization code.');

    const result = await this.endpoint.exchangeCode({ provider, code: new Secret(code), codeVerifier: verifier, redirectUri: this.redirectUri });
    if (!result.ok) {
      const label = LABEL.test(result.failure.code) ? result.failure.code : 'exchange_failed';
      return this.fail(sessionHash, session, label, 'The provider did not exchange the authorization code; nothing was connected.');
    }
    const issued = result.token;
    const identity = { tenant: session.tenant, connection: session.connection, provider: provider.id };
    const credential = await this.storeWithRetries(session, provider, issued);
    if (!credential) {
      await this.giveBack(session, provider, issued);
      return this.fail(sessionHash, session, 'store_failed', 'The grant could not be stored, so it was handed back to the provider; nothing was connected. Start again in a moment.', 503).catch(() =>
        htmlPage(503, 'Not connected', 'The grant could not be stored; nothing was connected. Start again in a moment.'),
      );
    }
    // The credential is stored: a session left `completing` by a failure here is only purged later.
    await this.sessions.finish(sessionHash, 'connected', new Date(this.clock.now())).catch((error: unknown) => {
      this.logger.warn({ msg: 'connect: ending the session failed (the credential is stored)', ...identity, error: error instanceof Error ? error.name : typeof error });
    });
    if (!issued.refreshToken && provider.grant === 'refresh_token') {
      this.logger.warn({ msg: 'connected without a refresh token: it cannot be refreshed', ...identity, hint: presetHint(provider) });
    }
    this.logger.log({ msg: 'connected', ...identity, version: credential.version });
    if (session.returnUrl) return { kind: 'redirect', status: 303, location: withStatus(session.returnUrl, 'connected') };
    return htmlPage(200, 'Connected', `${provider.id} is connected for ${session.tenant}/${session.connection}. You can close this window.`);
  }

  /** The grant stored as `register` stores one, retried on failure; null when every try failed. */
  private async storeWithRetries(session: ConnectSession, provider: ProviderConfig, issued: IssuedToken): Promise<Credential | null> {
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
            issuedAt: issued.requestedAt,
          },
          [auditRecord('connected', identity, this.config.replicaId, { outcome: issued.refreshToken ? 'with_refresh_token' : 'without_refresh_token' })],
        );
      } catch (error) {
        const name = error instanceof Error ? error.name : typeof error;
        if (attempt >= STORE_RETRY_DELAYS_MS.length) {
          this.logger.error({ msg: 'connect: the grant could not be stored; revoking it at the provider', ...identity, error: name });
          return null;
        }
        this.logger.warn({ msg: 'connect: storing the grant failed; retrying', ...identity, attempt: attempt + 1, error: name });
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
      this.logger.warn({ msg: 'connect: revoking the unstored grant failed', provider: provider.id, error: error instanceof Error ? error.name : typeof error });
    }
  }

  /** A state nobody can take any more: used, expired (recorded once, as the session's end), or never issued. */
  private async refusedCallback(stateHash: Buffer, now: number): Promise<ConnectPage> {
    const session = await this.sessions.findByState(stateHash);
    if (!session) return htmlPage(400, 'Invalid request', 'This link is not valid: its state is unknown.');
    if (session.status === 'redirected' && session.expiresAt.getTime() <= now) {
      await this.sessions.expireByState(stateHash, new Date(now), auditRecord('connect_failed', session, this.config.replicaId, { code: 'session_expired' }));
      return htmlPage(410, 'Link expired', 'This connection link has expired. Start again from your application.');
    }
    return htmlPage(409, 'Already used', 'This answer was already used. Start again from your application.');
  }

  private async fail(sessionHash: Buffer, session: ConnectSession, code: string, message: string, status?: number): Promise<ConnectPage> {
    const identity = { tenant: session.tenant, connection: session.connection, provider: session.provider };
    await this.sessions.finish(sessionHash, 'failed', new Date(this.clock.now()), auditRecord('connect_failed', identity, this.config.replicaId, { code }));
    this.logger.warn({ msg: 'connect failed', ...identity, code });
    if (session.returnUrl) return { kind: 'redirect', status: 303, location: withStatus(session.returnUrl, 'failed', code) };
    return htmlPage(status ?? (code === 'access_denied' ? 403 : 400), 'Not connected', message);
  }
}

function refusedLink(session: ConnectSession | null, now: number): ConnectPage {
  if (!session) return unknownLink();
  if (session.status === 'created' && session.expiresAt.getTime() <= now) {
    return htmlPage(410, 'Link expired', 'This connection link has expired. Ask for a new one.');
  }
  return htmlPage(409, 'Link already used', 'This connection link was already used. Ask for a new one.');
}

function unknownLink(): ConnectPage {
  return htmlPage(404, 'Unknown link', 'This connection link is not valid.');
}

function withStatus(returnUrl: string, status: 'connected' | 'failed', code?: string): string {
  const url = new URL(returnUrl);
  url.searchParams.set('status', status);
  if (code) url.searchParams.set('error', code);
  return url.toString();
}

function presetHint(provider: ProviderConfig): string {
  return provider.preset === 'google' ? 'Google issues a refresh token only with access_type=offline and prompt=consent' : 'check the scopes (offline_access) and authorizeParams';
}

function single(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
