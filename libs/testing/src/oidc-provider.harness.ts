import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, { type Configuration } from 'oidc-provider';

export interface OidcProviderOptions {
  /** Exact redirect URIs of the one client (the refresher's `<PUBLIC_BASE_URL>/oauth/callback`). */
  redirectUris: string[];
  /** Default 'tk-client'. */
  clientId?: string;
  /** Default: random. */
  clientSecret?: string;
  /** Scopes the server knows besides openid and offline_access. Default ['api:read']. */
  scopes?: string[];
  /** Default 300. */
  accessTokenTtlSeconds?: number;
  /** Logins the interaction accepts (login → password). Default { alice: 'wonderland' }. */
  accounts?: Record<string, string>;
}

export interface OidcTokenResponse {
  status: number;
  body: Record<string, any>;
}

export interface Introspection {
  active: boolean;
  [claim: string]: unknown;
}

/**
 * panva's oidc-provider on a free loopback port, configured as a strict OAuth 2.0 server
 * for the connect flow: one confidential client (client_secret_basic), PKCE S256 required,
 * authorization_code + refresh_token grants, a refresh token with every code exchange,
 * refresh-token rotation on every use (a rotated-away token is rejected, and its reuse
 * revokes the grant, as oidc-provider does), RFC 9207 `iss` in every authorization
 * response (always on in oidc-provider ≥ 8; discovery says
 * `authorization_response_iss_parameter_supported`), introspection for resource servers.
 *
 * Login and consent are oidc-provider's devInteractions: plain HTML forms (`login`,
 * `password`, a "Continue" button, a "[ Cancel ]" link that answers `access_denied`),
 * which a headless browser fills in (BrowserHarness). The login is checked against
 * `accounts`, so a wrong password does not sign in.
 */
export class OidcProviderHarness {
  readonly clientId: string;
  readonly clientSecret: string;
  /** `http://127.0.0.1:<port>`: the `iss` of every authorization response. */
  readonly issuer: string;
  readonly authorizationUrl: string;
  readonly tokenUrl: string;
  readonly introspectionUrl: string;
  readonly revocationUrl: string;
  /** A protected resource: GET with `Authorization: Bearer <access token>` → 200 `{sub, scope}` or 401. */
  readonly resourceUrl: string;
  /** Authorization requests seen (their query), newest last: what the refresher sent. */
  readonly authorizationRequests: URLSearchParams[] = [];
  /** Token endpoint requests seen (form body and the client's auth method), newest last. */
  readonly tokenRequests: { params: URLSearchParams; basicAuth: boolean }[] = [];

  private constructor(
    private readonly server: Server,
    readonly provider: Provider,
    options: { clientId: string; clientSecret: string },
  ) {
    const port = (server.address() as AddressInfo).port;
    this.clientId = options.clientId;
    this.clientSecret = options.clientSecret;
    this.issuer = `http://127.0.0.1:${port}`;
    this.authorizationUrl = `${this.issuer}/auth`;
    this.tokenUrl = `${this.issuer}/token`;
    this.introspectionUrl = `${this.issuer}/token/introspection`;
    this.revocationUrl = `${this.issuer}/token/revocation`;
    this.resourceUrl = `${this.issuer}/api/me`;
  }

  static async start(options: OidcProviderOptions): Promise<OidcProviderHarness> {
    const clientId = options.clientId ?? 'tk-client';
    const clientSecret = options.clientSecret ?? randomBytes(24).toString('base64url');
    const accounts = options.accounts ?? { alice: 'wonderland' };
    // The issuer holds the port, so listen first and install the handler afterwards.
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const provider = new Provider(issuer, configuration(options, clientId, clientSecret));
    const harness = new OidcProviderHarness(server, provider, { clientId, clientSecret });
    const callback = provider.callback();
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      void harness.handle(req, res, callback, accounts);
    });
    return harness;
  }

  /** A client's code exchange (client_secret_basic), for tests that play the client themselves. */
  exchangeCode(code: string, codeVerifier: string, redirectUri: string): Promise<OidcTokenResponse> {
    return this.tokenRequest({
      grant_type: 'authorization_code',
      code,
      code_verifier: codeVerifier,
      redirect_uri: redirectUri,
    });
  }

  refresh(refreshToken: string): Promise<OidcTokenResponse> {
    return this.tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken });
  }

  /** RFC 7662, authenticated as the client: what a resource server learns about a token. */
  async introspect(token: string): Promise<Introspection> {
    const res = await fetch(this.introspectionUrl, {
      method: 'POST',
      headers: { authorization: this.basicAuth(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    if (res.status !== 200) throw new Error(`introspection answered ${res.status}`);
    return (await res.json()) as Introspection;
  }

  /** Status of a resource request with this access token (200 accepted, 401 refused). */
  async callResource(accessToken: string): Promise<{ status: number; body: any }> {
    const res = await fetch(this.resourceUrl, { headers: { authorization: `Bearer ${accessToken}` } });
    return { status: res.status, body: await res.json() };
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async tokenRequest(form: Record<string, string>): Promise<OidcTokenResponse> {
    const res = await fetch(this.tokenUrl, {
      method: 'POST',
      headers: { authorization: this.basicAuth(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  }

  private basicAuth(): string {
    // RFC 6749 §2.3.1: each part form-urlencoded before base64.
    const pair = `${encodeURIComponent(this.clientId)}:${encodeURIComponent(this.clientSecret)}`;
    return `Basic ${Buffer.from(pair).toString('base64')}`;
  }

  private async handle(
    req: IncomingMessage,
    res: ServerResponse,
    callback: (req: IncomingMessage, res: ServerResponse) => unknown,
    accounts: Record<string, string>,
  ): Promise<void> {
    const url = new URL(req.url ?? '/', this.issuer);
    if (url.pathname === '/api/me') return this.serveResource(req, res);
    if (url.pathname === '/auth' && req.method === 'GET') this.authorizationRequests.push(url.searchParams);
    if (url.pathname === '/token' && req.method === 'POST') {
      const body = await readBody(req);
      this.tokenRequests.push({
        params: new URLSearchParams(body),
        basicAuth: /^basic /i.test(req.headers.authorization ?? ''),
      });
      return void callback(withBody(req, body), res);
    }
    // devInteractions' forms post to /interaction/<uid> (login and consent alike).
    if (/^\/interaction\/[^/]+$/.test(url.pathname) && req.method === 'POST') {
      const body = await readBody(req);
      const form = new URLSearchParams(body);
      if (form.get('prompt') === 'login' && accounts[form.get('login') ?? ''] !== form.get('password')) {
        res.writeHead(401, { 'content-type': 'text/plain' }).end('wrong login or password');
        return;
      }
      return void callback(withBody(req, body), res);
    }
    callback(req, res);
  }

  private async serveResource(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const token = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const info = token ? await this.introspect(token) : { active: false };
    const status = info.active && info.token_type !== 'refresh_token' ? 200 : 401;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(status === 200 ? { sub: info.sub, scope: info.scope } : { error: 'invalid_token' }));
  }
}

export function startOidcProvider(options: OidcProviderOptions): Promise<OidcProviderHarness> {
  return OidcProviderHarness.start(options);
}

function configuration(options: OidcProviderOptions, clientId: string, clientSecret: string): Configuration {
  return {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: options.redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    scopes: ['openid', 'offline_access', ...(options.scopes ?? ['api:read'])],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    // Every code exchange yields a refresh token (no offline_access / prompt=consent dance),
    // and every refresh rotates it.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    ttl: {
      AccessToken: options.accessTokenTtlSeconds ?? 300,
      AuthorizationCode: 60,
      RefreshToken: 24 * 3600,
      Grant: 24 * 3600,
      Interaction: 600,
      Session: 3600,
      IdToken: 300,
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * The request with its body already read: oidc-provider's parser then takes `req.body`
 * (it says so once on stderr), so the harness can look at token and login forms first.
 */
function withBody(req: IncomingMessage, body: string): IncomingMessage {
  return Object.assign(req, { body });
}
