import { createHash } from 'node:crypto';
import { bindProvider } from '../providers/url-placeholders.policy.js';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Secret } from '@tokenkeeper/common';
import { APP_CONFIG, type AppConfig } from '../config/app-config.js';
import { Clock } from '../domain/clock.js';
import { auditRecord } from '../persistence/audit-record.js';
import { ConnectSessionRepository, type ConnectSession } from '../persistence/connect-session.repository.js';
import { ProviderRegistry } from '../providers/provider.registry.js';
import type { ProviderConfig } from '../providers/provider.types.js';
import { htmlPage, type ConnectPage } from './connect-page.js';
import {
  bindingCookieName,
  ConnectLinkSigner,
  FORM_COOKIE,
  hostCookie,
  isNonce,
  randomNonce,
} from './connect-link.signer.js';

/** Set by Tokenkeeper on the authorization request; a provider's `authorizeParams` cannot override them. */
const OWN_PARAMS = [
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
];
/** The form cookie outlives any session (CONNECT_MAX_TTL_SECONDS): a page left open still posts. */
const FORM_COOKIE_MAX_AGE_SECONDS = 3_600;

/** What the button's POST brought: its form field, and the headers that say where it came from. */
export interface ConnectPost {
  formToken: unknown;
  cookies: Map<string, string>;
  origin?: string;
  secFetchSite?: string;
}

/**
 * The connect link itself: `GET /connect/<session>` only shows what is being
 * connected, so a link scanner or a chat unfurler consumes nothing; the page's button (a
 * POST that must come from that page in that browser) binds the session to the browser with
 * a cookie and sends it to the provider. An id this deployment did not mint is turned away
 * before any query.
 */
@Injectable()
export class ConnectLinkService {
  private readonly logger = new Logger(ConnectLinkService.name);
  private readonly publicOrigin: string;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly sessions: ConnectSessionRepository,
    private readonly providers: ProviderRegistry,
    private readonly signer: ConnectLinkSigner,
    private readonly clock: Clock,
  ) {
    this.publicOrigin = new URL(config.connect.publicBaseUrl).origin;
  }

  /** `GET /connect/<session>`: the confirmation page, or why there is none. Changes nothing but the browser's form cookie. */
  async page(sessionId: string, cookies: Map<string, string>): Promise<ConnectPage> {
    if (!this.signer.verify('session', sessionId)) return unknownLink();
    const session = await this.sessions.find(sha256(sessionId));
    const refused = refusedLink(session, this.clock.now());
    if (refused) return refused;
    const provider = this.providerOf(session!);
    if (!provider?.authorizationUrl)
      return htmlPage(400, 'Not available', 'This connection’s provider is no longer configured. Ask for a new link.');

    const known = cookies.get(FORM_COOKIE);
    const formNonce = known !== undefined && isNonce(known) ? known : randomNonce();
    const { tenant, connection, scopes, metadata } = session!;
    const displayName = metadata.displayName?.trim();
    return {
      kind: 'html',
      status: 200,
      title: `Connect ${provider.id}`,
      message:
        'Check what is being connected. Continue only if you started this yourself: your consent at the provider will belong to the tenant named here.',
      facts: [
        ['Tenant', displayName ? `${displayName} (${tenant})` : tenant],
        ['Connection', connection],
        ['Provider', `${provider.id} (${new URL(provider.authorizationUrl).host})`],
        ['Scopes', scopes.length ? scopes.join(' ') : '(none)'],
      ],
      form: {
        token: this.signer.formToken(sessionId, formNonce),
        button: `Continue to ${provider.id}`,
        redirectOrigin: new URL(provider.authorizationUrl).origin,
      },
      cookies: known === formNonce ? [] : [hostCookie(FORM_COOKIE, formNonce, FORM_COOKIE_MAX_AGE_SECONDS, 'Lax')],
    };
  }

  /** `POST /connect/<session>` (the page's button): once per session, to the provider with a fresh state, PKCE challenge and browser binding. */
  async begin(sessionId: string, post: ConnectPost): Promise<ConnectPage> {
    if (!this.signer.verify('session', sessionId)) return unknownLink();
    if (!this.fromOwnPage(sessionId, post)) {
      this.logger.warn({ msg: 'connect: a POST that did not come from the connect page was refused' });
      return htmlPage(
        403,
        'Not started',
        'This request did not come from the connection page in this browser, so nothing was started. Open the link again and press its button.',
      );
    }
    const state = this.signer.mint('state');
    const verifier = new Secret(randomNonce());
    const binding = randomNonce();
    const sessionHash = sha256(sessionId);
    const now = this.clock.now();
    const session = await this.sessions.beginRedirect(
      sessionHash,
      sha256(state),
      verifier,
      sha256(binding),
      new Date(now),
    );
    if (!session) return refusedLink(await this.sessions.find(sessionHash), now) ?? unknownLink();
    const provider = this.providerOf(session);
    if (!provider?.authorizationUrl) return this.providerGone(sessionHash, session);

    const maxAge = Math.max(1, Math.ceil((session.expiresAt.getTime() - now) / 1000));
    this.logger.log({
      msg: 'connect: sent to the provider',
      tenant: session.tenant,
      connection: session.connection,
      provider: provider.id,
    });
    return {
      kind: 'redirect',
      status: 303,
      location: this.authorizationUrl(provider, session, state, verifier),
      cookies: [hostCookie(bindingCookieName(state), binding, maxAge, 'Lax')],
    };
  }

  /**
   * The POST came from this deployment's page in this browser: the browser says so where it
   * sends the headers (Sec-Fetch-Site, Origin), and the form token matches both the session
   * and the form cookie, which a browser does not send with another site's POST (SameSite=Lax,
   * not Strict: a person arriving from a chat link keeps the cookie, so two pages open in two
   * tabs share it and both buttons work).
   */
  private fromOwnPage(sessionId: string, post: ConnectPost): boolean {
    if (post.secFetchSite !== undefined && post.secFetchSite !== 'same-origin') return false;
    if (post.origin !== undefined && post.origin !== this.publicOrigin) return false;
    return this.signer.checkFormToken(sessionId, post.cookies.get(FORM_COOKIE), post.formToken);
  }

  /** The session's provider with its URLs filled for this connection; undefined when gone or no longer fitting. */
  private providerOf(session: ConnectSession): ProviderConfig | undefined {
    const provider = this.providers.get(session.provider);
    if (!provider) return undefined;
    try {
      return bindProvider(provider, session.connectionConfig);
    } catch {
      return undefined;
    }
  }

  private authorizationUrl(provider: ProviderConfig, session: ConnectSession, state: string, verifier: Secret): string {
    const url = new URL(provider.authorizationUrl!);
    for (const [key, value] of Object.entries(provider.authorizeParams ?? {}))
      if (!OWN_PARAMS.includes(key)) url.searchParams.set(key, value);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', provider.clientId);
    url.searchParams.set('redirect_uri', `${this.config.connect.publicBaseUrl}/oauth/callback`);
    if (session.scopes.length) url.searchParams.set('scope', session.scopes.join(' '));
    url.searchParams.set('state', state);
    url.searchParams.set('code_challenge', createHash('sha256').update(verifier.reveal()).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    return url.toString();
  }

  private async providerGone(sessionHash: Buffer, session: ConnectSession): Promise<ConnectPage> {
    const identity = { tenant: session.tenant, connection: session.connection, provider: session.provider };
    await this.sessions.finish(
      sessionHash,
      'failed',
      new Date(this.clock.now()),
      auditRecord('connect_failed', identity, this.config.replicaId, { code: 'unknown_provider' }),
    );
    this.logger.warn({ msg: 'connect failed', ...identity, code: 'unknown_provider' });
    return htmlPage(400, 'Not connected', 'This connection’s provider is no longer configured.');
  }
}

/** Why a session cannot be started any more; undefined when it can. */
function refusedLink(session: ConnectSession | null, now: number): ConnectPage | undefined {
  if (!session) return unknownLink();
  if (session.status === 'created' && session.expiresAt.getTime() <= now) {
    return htmlPage(410, 'Link expired', 'This connection link has expired. Ask for a new one.');
  }
  if (session.status !== 'created')
    return htmlPage(409, 'Link already used', 'This connection link was already used. Ask for a new one.');
  return undefined;
}

function unknownLink(): ConnectPage {
  return htmlPage(404, 'Unknown link', 'This connection link is not valid.');
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
