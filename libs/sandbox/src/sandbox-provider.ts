import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SandboxAuthorizer } from './sandbox-authorize.js';
import { respondWithFault, type SandboxFault } from './sandbox-faults.js';
import { SandboxTokenStore } from './sandbox-tokens.store.js';

export { HUGE_BODY_BYTES, type SandboxFault } from './sandbox-faults.js';

export interface SandboxOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 'sandbox-client'. */
  clientId?: string;
  /** Default 'sandbox-secret'. */
  clientSecret?: string;
  /** Also accept the client with no secret at all (auth method `none`). Default false. */
  allowPublicClient?: boolean;
  /** Default 20; fractions are allowed, for fast tests. */
  accessTokenTtlSeconds?: number;
  /** Default true. */
  rotateRefreshTokens?: boolean;
  /** Auth0 "reuse interval" / Okta "grace period": a rotated-away token stays usable this long. Default 0. */
  reuseGraceSeconds?: number;
  /** Send `expires_in` as a numeric string, as some providers do. */
  expiresInAsString?: boolean;
  /** When set, responses carry a `refresh_in` hint with this many seconds. */
  refreshInSeconds?: number;
  /** Answer without `expires_in` (as Salesforce does): the token's lifetime is not told. Default false. */
  omitExpiresIn?: boolean;
  /** When set, responses carry `refresh_token_expires_in` with this many seconds (GitHub Apps). */
  refreshTokenExpiresInSeconds?: number;
  /** RFC 9207 issuer sent as `iss` on authorization responses; `true`: the sandbox's own URL. Default none. */
  issuer?: string | true;
  /** Redirect URIs the authorization endpoint accepts, exactly; default any http(s) URI. */
  redirectUris?: string[];
  /**
   * More fields in every successful token response, as providers add them (Salesforce's
   * `instance_url`, Slack's `team`, Intuit's `x_refresh_token_expires_in`). Changeable later
   * with `setResponseFields`.
   */
  responseFields?: Record<string, unknown>;
  /** Accept only this client authentication, as a provider that documents one: `basic` (header) or `post` (body). Default both. */
  clientAuthentication?: 'basic' | 'post';
}

export interface SandboxStats {
  tokenRequests: number;
  refreshGrants: number;
  clientCredentialsGrants: number;
  authorizationCodeGrants: number;
  successes: number;
  reuseDetected: number;
  familiesRevoked: number;
  invalidClient: number;
  apiCalls: number;
  apiUnauthorized: number;
  revocations: number;
  maxConcurrentTokenRequests: number;
}

export interface SandboxTokens {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

const MAX_FORM_BYTES = 64 * 1024;
const SWEEP_INTERVAL_MS = 10_000;

type ClientAuth = 'ok' | 'invalid_client' | 'invalid_client_basic' | 'invalid_request';

class RequestTooLarge extends Error {}

function emptyStats(): SandboxStats {
  return {
    tokenRequests: 0,
    refreshGrants: 0,
    clientCredentialsGrants: 0,
    authorizationCodeGrants: 0,
    successes: 0,
    reuseDetected: 0,
    familiesRevoked: 0,
    invalidClient: 0,
    apiCalls: 0,
    apiUnauthorized: 0,
    revocations: 0,
    maxConcurrentTokenRequests: 0,
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new RequestTooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** RFC 6749 §2.3.1: Basic credentials are form-encoded before base64; many clients skip that, so accept both. */
function formDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    pragma: 'no-cache',
    ...headers,
  });
  res.end(JSON.stringify(body));
}

function oauthError(
  res: ServerResponse,
  status: number,
  error: string,
  description: string,
  headers?: Record<string, string>,
): void {
  sendJson(res, status, { error, error_description: description }, headers);
}

/**
 * A small OAuth2 provider for tests, the demo and benchmarks: a token endpoint
 * with Auth0/Okta refresh-token rotation and reuse detection, an authorization
 * endpoint with a consent page (code with PKCE S256, sandbox-authorize.ts), RFC 7009
 * revocation, a protected API, and fault injection. It never logs: tokens must
 * not end up in test output either.
 */
export class SandboxProvider {
  readonly url: string;
  readonly tokenUrl: string;
  readonly revocationUrl: string;
  readonly apiUrl: string;
  readonly authorizationUrl: string;
  readonly issuer?: string;
  readonly stats: Readonly<SandboxStats> = emptyStats();

  private readonly store = new SandboxTokenStore();
  private readonly authorizer: SandboxAuthorizer;
  private readonly clientId: string;
  private readonly clientSecret: string;
  private readonly allowPublicClient: boolean;
  private readonly rotate: boolean;
  private readonly graceMs: number;
  private readonly expiresInAsString: boolean;
  private readonly refreshInSeconds?: number;
  private ttlSeconds: number;
  private responseFields: Record<string, unknown>;
  private readonly omitExpiresIn: boolean;
  private readonly clientAuthentication?: 'basic' | 'post';
  /** The path of every token request, in order: shows what a URL with placeholders was filled to. */
  readonly tokenRequestPaths: string[] = [];
  private tokenDelayMs = 0;
  private apiAlwaysUnauthorized = false;
  private readonly queuedFaults: SandboxFault[] = [];
  private persistentFault: SandboxFault | null = null;
  private tokenRequestsInFlight = 0;
  private readonly pendingPauses = new Set<() => void>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  private readonly refreshTokenExpiresInSeconds: number | undefined;

  private constructor(
    private readonly server: Server,
    options: SandboxOptions,
  ) {
    const { address, port } = server.address() as AddressInfo;
    const host = address.includes(':') ? `[${address}]` : address;
    this.url = `http://${host}:${port}`;
    this.tokenUrl = `${this.url}/oauth/token`;
    this.revocationUrl = `${this.url}/oauth/revoke`;
    this.apiUrl = `${this.url}/api/resource`;
    this.authorizationUrl = `${this.url}/authorize`;
    this.issuer = options.issuer === true ? this.url : options.issuer;
    this.clientId = options.clientId ?? 'sandbox-client';
    this.clientSecret = options.clientSecret ?? 'sandbox-secret';
    this.allowPublicClient = options.allowPublicClient ?? false;
    this.ttlSeconds = options.accessTokenTtlSeconds ?? 20;
    this.rotate = options.rotateRefreshTokens ?? true;
    this.graceMs = (options.reuseGraceSeconds ?? 0) * 1000;
    this.expiresInAsString = options.expiresInAsString ?? false;
    this.refreshInSeconds = options.refreshInSeconds;
    this.omitExpiresIn = options.omitExpiresIn ?? false;
    this.refreshTokenExpiresInSeconds = options.refreshTokenExpiresInSeconds;
    this.responseFields = { ...options.responseFields };
    this.clientAuthentication = options.clientAuthentication;
    this.authorizer = new SandboxAuthorizer({
      clientId: this.clientId,
      issuer: this.issuer,
      redirectUris: options.redirectUris,
    });
    this.sweeper = setInterval(() => {
      this.store.sweepExpired();
      this.authorizer.sweepExpired();
    }, SWEEP_INTERVAL_MS).unref();
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.route(req, res).catch(() => {
        if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
        else res.destroy();
      });
    });
  }

  /** Use `startSandboxProvider`; the constructor needs a listening server to know its URL. */
  static async start(options: SandboxOptions = {}): Promise<SandboxProvider> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new SandboxProvider(server, options);
  }

  /**
   * Settings for a providers file entry backed by this sandbox. The
   * authorization endpoint is left out (pass `authorizationUrl` to connect through it), so
   * that an entry stays register-only unless a test says otherwise.
   */
  providerSettings(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      tokenUrl: this.tokenUrl,
      revocationUrl: this.revocationUrl,
      clientId: this.clientId,
      clientSecret: this.clientSecret,
      authMethod: 'client_secret_basic',
      grant: 'refresh_token',
      ...(this.issuer !== undefined ? { issuer: this.issuer } : {}),
      ...overrides,
    };
  }

  /** Starts a new refresh-token family and returns its first refresh token. */

  issueRefreshToken(): string {
    return this.store.startFamily();
  }

  /** A new family together with a valid access token, as an authorization-code exchange would give. */
  issueTokens(): SandboxTokens {
    const refreshToken = this.store.startFamily();
    const accessToken = this.store.issueAccessFor(refreshToken, this.ttlSeconds);
    return { accessToken, refreshToken, expiresIn: this.ttlSeconds };
  }

  /** The next `times` token requests get this fault, after any already queued. */
  injectFault(fault: SandboxFault, times = 1): void {
    for (let i = 0; i < times; i++) this.queuedFaults.push(fault);
  }

  /** Every token request gets this fault (after the queued ones) until it is set to null. */
  setFault(fault: SandboxFault | null): void {
    this.persistentFault = fault;
  }

  /** Drops queued faults and the persistent one. */
  clearFaults(): void {
    this.queuedFaults.length = 0;
    this.persistentFault = null;
  }

  setApiAlwaysUnauthorized(on: boolean): void {
    this.apiAlwaysUnauthorized = on;
  }

  /** The protected API answers 401 for this token from now on, as after a provider-side revocation. */
  revokeAccessToken(token: string): void {
    this.store.revokeAccessToken(token);
  }

  /** Applies to tokens issued from now on. */
  setAccessTokenTtl(seconds: number): void {
    this.ttlSeconds = seconds;
  }

  /** Provider latency: every token response waits this long (before the grant is processed). */
  /** Fields added to token responses from now on (replacing the earlier ones). */
  setResponseFields(fields: Record<string, unknown>): void {
    this.responseFields = { ...fields };
  }

  setTokenDelay(ms: number): void {
    this.tokenDelayMs = ms;
  }

  presentations(refreshToken: string): number {
    return this.store.presentations(refreshToken);
  }

  /** Refresh tokens presented again after rotation, outside the reuse grace: each one is a client bug. */
  everPresentedTwice(): string[] {
    return this.store.everPresentedTwice();
  }

  /** Also forgets presentation counts and everPresentedTwice(). */
  resetStats(): void {
    this.store.resetPresentations();
    // In place, so that a reference taken earlier stays live.
    Object.assign(this.stats, emptyStats(), { maxConcurrentTokenRequests: this.tokenRequestsInFlight });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const release of this.pendingPauses) release();
    this.pendingPauses.clear();
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Stalled requests and keep-alive sockets would otherwise hold close() open forever.
    this.server.closeAllConnections();
    await closing;
  }

  private get mutableStats(): SandboxStats {
    return this.stats;
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://sandbox').pathname;
    // A token endpoint under a per-connection prefix (`/shops/<shop>/oauth/token`), as
    // providers with per-customer URLs have; the path is recorded.
    if (path.endsWith('/oauth/token') && path !== '/oauth/token') return this.tokenEndpoint(req, res);
    if (path.endsWith('/authorize') && path !== '/authorize') return this.authorizationEndpoint(req, res);
    switch (path) {
      case '/oauth/token':
        return this.tokenEndpoint(req, res);
      case '/oauth/revoke':
        return this.revocationEndpoint(req, res);
      case '/api/resource':
        return this.protectedApi(req, res);
      case '/authorize':
        return this.authorizationEndpoint(req, res);
      default:
        sendJson(res, 404, { error: 'not_found' });
    }
  }

  private async tokenEndpoint(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const stats = this.mutableStats;
    stats.tokenRequests++;
    this.tokenRequestPaths.push(new URL(req.url ?? '/', 'http://sandbox').pathname);
    this.tokenRequestsInFlight++;
    stats.maxConcurrentTokenRequests = Math.max(stats.maxConcurrentTokenRequests, this.tokenRequestsInFlight);
    res.once('close', () => this.tokenRequestsInFlight--);

    const form = await this.readForm(req, res);
    if (!form) return;
    if (this.tokenDelayMs > 0 && !(await this.pause(this.tokenDelayMs))) return;

    const fault = this.queuedFaults.shift() ?? this.persistentFault;
    if (fault && respondWithFault(fault, req, res)) return;
    if (fault?.type === 'delay' && !(await this.pause(fault.ms))) return;

    const auth = this.authenticateClient(req, form);
    if (auth !== 'ok') return this.rejectClient(res, auth);

    // The grant is processed even when the client has gone away meanwhile, as a real
    // provider would: a rotation whose answer was lost is what makes retries risky.
    const grantType = form.get('grant_type');
    const scope = form.get('scope') ?? undefined;
    if (grantType === 'refresh_token') {
      stats.refreshGrants++;
      const refreshToken = form.get('refresh_token');
      if (!refreshToken) return oauthError(res, 400, 'invalid_request', 'refresh_token is required');
      const outcome = this.store.refresh(refreshToken, {
        rotate: this.rotate,
        graceMs: this.graceMs,
        ttlSeconds: this.ttlSeconds,
        scope,
      });
      if (!outcome.ok) {
        if (outcome.reason === 'reuse') stats.reuseDetected++;
        if (outcome.familyRevokedNow) stats.familiesRevoked++;
        const description =
          outcome.reason === 'reuse'
            ? 'refresh token reuse detected; the token family is revoked'
            : outcome.reason === 'family_revoked'
              ? 'refresh token revoked'
              : 'unknown refresh token';
        return oauthError(res, 400, 'invalid_grant', description);
      }
      return this.sendTokens(
        res,
        outcome.accessToken,
        outcome.refreshToken,
        outcome.scope,
        fault?.type === 'expires_in' ? fault.value : undefined,
      );
    }
    if (grantType === 'authorization_code') {
      stats.authorizationCodeGrants++;
      const redeemed = this.authorizer.redeem({
        code: form.get('code'),
        clientId: this.clientId,
        redirectUri: form.get('redirect_uri'),
        codeVerifier: form.get('code_verifier'),
      });
      if (!redeemed.ok) {
        if (redeemed.revokeRefreshToken && this.store.revoke(redeemed.revokeRefreshToken).familyRevokedNow)
          stats.familiesRevoked++;
        return oauthError(res, 400, 'invalid_grant', redeemed.description);
      }
      // A new family, exactly as issueTokens() starts one; refreshes then rotate it as any other.
      const refreshToken = this.store.startFamily(redeemed.scope);
      redeemed.bind(refreshToken);
      const accessToken = this.store.issueAccessFor(refreshToken, this.ttlSeconds);
      return this.sendTokens(
        res,
        accessToken,
        refreshToken,
        redeemed.scope,
        fault?.type === 'expires_in' ? fault.value : undefined,
      );
    }
    if (grantType === 'client_credentials') {
      stats.clientCredentialsGrants++;
      return this.sendTokens(
        res,
        this.store.clientCredentials(this.clientId, this.ttlSeconds, scope),
        undefined,
        scope,
        fault?.type === 'expires_in' ? fault.value : undefined,
      );
    }
    if (!grantType) return oauthError(res, 400, 'invalid_request', 'grant_type is required');
    return oauthError(
      res,
      400,
      'unsupported_grant_type',
      'only authorization_code, refresh_token and client_credentials are supported',
    );
  }

  /** `expiresIn` overrides what is advertised (a fault); the token itself lives ttlSeconds either way. */
  private sendTokens(
    res: ServerResponse,
    accessToken: string,
    refreshToken?: string,
    scope?: string,
    expiresIn?: number | string,
  ): void {
    this.mutableStats.successes++;
    const body: Record<string, unknown> = {
      ...this.responseFields,
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: expiresIn ?? (this.expiresInAsString ? String(this.ttlSeconds) : this.ttlSeconds),
    };
    if (this.omitExpiresIn && expiresIn === undefined) delete body.expires_in;
    if (refreshToken) body.refresh_token = refreshToken;
    if (scope) body.scope = scope;
    if (this.refreshInSeconds !== undefined) body.refresh_in = this.refreshInSeconds;
    if (refreshToken && this.refreshTokenExpiresInSeconds !== undefined) {
      body.refresh_token_expires_in = this.refreshTokenExpiresInSeconds;
    }
    sendJson(res, 200, body);
  }

  /** GET: the consent page; POST: the person's answer (sandbox-authorize.ts). Errors are pages, not JSON: a browser reads them. */
  private async authorizationEndpoint(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'GET')
      return this.authorizer.consentPage(new URL(req.url ?? '/', 'http://sandbox').searchParams, res);
    if (req.method !== 'POST') {
      res
        .writeHead(405, {
          allow: 'GET, POST',
          'content-type': 'text/plain; charset=utf-8',
          'cache-control': 'no-store',
        })
        .end('method not allowed\n');
      return;
    }
    let body: string;
    try {
      body = await readBody(req);
    } catch (error) {
      if (error instanceof RequestTooLarge)
        res.writeHead(413, { 'content-type': 'text/plain; charset=utf-8' }).end('body too large\n');
      else res.destroy();
      return;
    }
    this.authorizer.decide(new URLSearchParams(body), res);
  }

  private async revocationEndpoint(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await this.readForm(req, res);
    if (!form) return;
    const auth = this.authenticateClient(req, form);
    if (auth !== 'ok') return this.rejectClient(res, auth);
    const token = form.get('token');
    if (!token) return oauthError(res, 400, 'invalid_request', 'token is required');
    const stats = this.mutableStats;
    stats.revocations++;
    if (this.store.revoke(token).familyRevokedNow) stats.familiesRevoked++;
    // RFC 7009 §2.2: 200 even for unknown or already revoked tokens.
    if (!res.destroyed) res.writeHead(200, { 'cache-control': 'no-store' }).end();
  }

  private protectedApi(req: IncomingMessage, res: ServerResponse): void {
    const stats = this.mutableStats;
    stats.apiCalls++;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const check = match ? this.store.checkAccess(match[1]) : ({ ok: false, reason: 'missing' } as const);
    if (this.apiAlwaysUnauthorized || !check.ok) {
      stats.apiUnauthorized++;
      const reason = check.ok ? 'rejected' : check.reason;
      return sendJson(
        res,
        401,
        { ok: false, error: 'invalid_token' },
        {
          'www-authenticate': `Bearer realm="sandbox", error="invalid_token", error_description="token ${reason}"`,
        },
      );
    }
    sendJson(res, 200, { ok: true, subject: check.subject, ...(check.scope ? { scope: check.scope } : {}) });
  }

  /** Answers the error itself and returns undefined when the request is not a usable form POST. */
  private async readForm(req: IncomingMessage, res: ServerResponse): Promise<URLSearchParams | undefined> {
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: 'invalid_request', error_description: 'use POST' }, { allow: 'POST' });
      return undefined;
    }
    let body: string;
    try {
      body = await readBody(req);
    } catch (error) {
      if (error instanceof RequestTooLarge)
        sendJson(res, 413, { error: 'invalid_request', error_description: 'body too large' });
      else res.destroy();
      return undefined;
    }
    const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (contentType !== 'application/x-www-form-urlencoded') {
      oauthError(res, 400, 'invalid_request', 'body must be application/x-www-form-urlencoded');
      return undefined;
    }
    const form = new URLSearchParams(body);
    const names = [...form.keys()];
    if (new Set(names).size !== names.length) {
      // RFC 6749 §3.2: parameters must not be repeated; a client that does so has a bug worth seeing.
      oauthError(res, 400, 'invalid_request', 'repeated parameter');
      return undefined;
    }
    return form;
  }

  private authenticateClient(req: IncomingMessage, form: URLSearchParams): ClientAuth {
    const header = req.headers.authorization;
    const formId = form.get('client_id');
    const formSecret = form.get('client_secret');
    if (this.clientAuthentication === 'basic' && !header) return 'invalid_client';
    if (this.clientAuthentication === 'post' && header) return 'invalid_client_basic';
    if (header) {
      const match = /^Basic\s+(\S+)\s*$/i.exec(header);
      if (!match) return 'invalid_client_basic';
      const decoded = Buffer.from(match[1], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) return 'invalid_client_basic';
      const rawId = decoded.slice(0, colon);
      const rawSecret = decoded.slice(colon + 1);
      // RFC 6749 §2.3: one authentication method per request.
      if (formSecret !== null) return 'invalid_request';
      const idOk = rawId === this.clientId || formDecode(rawId) === this.clientId;
      const secretOk = rawSecret === this.clientSecret || formDecode(rawSecret) === this.clientSecret;
      if (!idOk || !secretOk || (formId !== null && formId !== this.clientId)) return 'invalid_client_basic';
      return 'ok';
    }
    if (formId !== this.clientId) return 'invalid_client';
    if (formSecret === null) return this.allowPublicClient ? 'ok' : 'invalid_client';
    return formSecret === this.clientSecret ? 'ok' : 'invalid_client';
  }

  private rejectClient(res: ServerResponse, auth: Exclude<ClientAuth, 'ok'>): void {
    if (auth === 'invalid_request') {
      return oauthError(res, 400, 'invalid_request', 'use one client authentication method, not two');
    }
    this.mutableStats.invalidClient++;
    // RFC 6749 §5.2: a client that tried Basic gets a Basic challenge back.
    const headers: Record<string, string> =
      auth === 'invalid_client_basic' ? { 'www-authenticate': 'Basic realm="sandbox"' } : {};
    oauthError(res, 401, 'invalid_client', 'client authentication failed', headers);
  }

  /** Resolves true after `ms`, or false as soon as the provider closes, so close() never waits on a delay. */
  private pause(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const release = (): void => {
        clearTimeout(timer);
        this.pendingPauses.delete(release);
        resolve(false);
      };
      const timer = setTimeout(() => {
        this.pendingPauses.delete(release);
        resolve(true);
      }, ms);
      this.pendingPauses.add(release);
    });
  }
}

export function startSandboxProvider(options?: SandboxOptions): Promise<SandboxProvider> {
  return SandboxProvider.start(options);
}
