import type { Secret } from '@tokenkeeper/common';

export const GRANT_TYPES = ['refresh_token', 'client_credentials'] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'none'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

export const PRESET_NAMES = [
  'github',
  'google',
  'microsoft',
  'auth0',
  'okta',
  'slack',
  'salesforce',
  'hubspot',
  'xero',
  'zoom',
  'shopify',
  'atlassian',
  'notion',
  'dropbox',
  'linkedin',
  'intuit',
  'generic',
] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

/**
 * What a provider does with a refresh token once it is used:
 * - `none`: the same refresh token stays valid (Google);
 * - `rotates`: each answer may carry a new one, which must replace the old (GitHub Apps, Microsoft, Slack);
 * - `rotates_with_reuse_detection`: as `rotates`, and presenting a used one again revokes the
 *   whole token family (Auth0, Okta): a retry after a lost answer can cost the credential.
 */
export type RefreshTokenRotation = 'none' | 'rotates' | 'rotates_with_reuse_detection';

/** One provider of the providers file, after presets are applied and the file is validated. */
export interface ProviderConfig {
  id: string;
  preset: PresetName;
  tokenUrl: string;
  clientId: string;
  clientSecret?: Secret;
  authMethod: AuthMethod;
  grant: GrantType;
  scopes?: string[];
  /**
   * Tenant names or `*`-patterns that may use this provider. Undefined: every tenant, except
   * for `client_credentials`, which is then open to none (see tenant-access.policy.ts).
   */
  tenants?: string[];
  /** What a connect request may ask for; absent: `scopes`, and nothing else. */
  allowedScopes?: string[];
  /** Fraction of a token's lifetime after which it is refreshed (0 < threshold < 1). */
  threshold: number;
  /** Lifetime assumed when the token response has no `expires_in`; undefined = never expires. */
  defaultTtlSeconds?: number;
  /**
   * A token with no known expiry is refreshed at least this often (where the grant can
   * refresh), so a refresh token with an idle timeout never runs out unseen. Default 86400.
   */
  keepAliveSeconds?: number;
  /** `token.expiring` goes out this many days before a refresh token's absolute expiry. Default 7. */
  expiryWarningDays?: number;
  revocationUrl?: string;
  /** Upper bound on token requests in flight to this provider from one replica. */
  maxConcurrency: number;
  /**
   * After a refresh at the provider, how long a credential's next on-demand refresh from
   * the data plane (a rejected current version, an unmet minTtl) must wait; 0 = no budget.
   */
  onDemandCooldownSeconds: number;
  /** Extra form parameters sent with every token request (e.g. `audience`). */
  extraParams: Record<string, string>;
  /**
   * Provider-specific error codes (beyond RFC 6749's) and how to treat them, e.g. GitHub's
   * `bad_refresh_token` (sent inside an HTTP 200). Supplied by presets, not by the file.
   */
  errorCodes?: Record<string, FailureKind>;
  /**
   * Token type to report whatever `token_type` says: Slack answers `bot` / `user`, but its
   * API (and every consumer building an Authorization header) wants `Bearer`. Preset-supplied.
   */
  tokenType?: string;
  /**
   * Refresh-token behaviour of the provider, from its preset. The engine treats every
   * provider alike (a new refresh token always replaces the old one, never two requests with
   * one refresh token in flight); RefreshService reads this only to warn when a provider
   * documented as rotating answers a refresh without a new refresh token.
   */
  rotation?: RefreshTokenRotation;
  /**
   * The connect flow. Without `authorizationUrl` the provider cannot be connected
   * through the browser; its credentials can still be registered with `register`.
   */
  authorizationUrl?: string;
  /** Query parameters added to the authorization redirect (Google's `access_type=offline`, Slack's `user_scope`). */
  authorizeParams?: Record<string, string>;
  /** RFC 9207: when set, a callback must carry `iss` equal to it (mix-up defence). */
  issuer?: string;
  /** Exact origins (`scheme://host[:port]`) a connect `returnUrl` may point to; none = no returnUrl accepted. */
  allowedReturnOrigins?: string[];
  /** Non-secret token-response fields kept with the credential and served as `extras` (token-fields.extractor.ts). */
  tokenFields?: string[];
  /** The token-response field that holds the refresh token's own lifetime in seconds (default `refresh_token_expires_in`); the only one read. */
  refreshTokenExpiresInField?: string;
  /** How long the provider still accepts a rotated-out refresh token (Xero: 30 minutes); informational. */
  reuseGraceSeconds?: number;
}

export interface TokenRequest {
  provider: ProviderConfig;
  /** Present for the refresh_token grant. */
  refreshToken?: Secret;
  /** Abort early, e.g. when the lease that allows this request runs out. */
  signal?: AbortSignal;
}

export interface IssuedToken {
  accessToken: Secret;
  /** Absent (or empty in the response) means: keep the refresh token you have. */
  refreshToken?: Secret;
  tokenType: string;
  /** From `expires_in`, counted from `requestedAt`. */
  expiresInSeconds?: number;
  /** Server hint (`refresh_in`) for when to refresh, counted from `requestedAt`. */
  refreshInSeconds?: number;
  /** The refresh token's absolute lifetime (`refresh_token_expires_in`), counted from `requestedAt`. */
  refreshTokenExpiresInSeconds?: number;
  scope?: string;
  /** When the request was sent: lifetimes count from here, not from when the answer arrived. */
  requestedAt: Date;
  /** The provider's `tokenFields` found in this response. */
  extras?: Record<string, string>;
}

/**
 * How a failed token request is handled (RFC 6749 §5.2):
 * - `invalid_grant`: the refresh token is dead; only a person can fix it (reauth_required);
 * - `misconfigured`: invalid_client / unauthorized_client / unsupported_grant_type …: log loudly, retry slowly;
 * - `retryable`: network, timeout, 5xx, 429, temporarily_unavailable, malformed body: back off and retry.
 */
export type FailureKind = 'invalid_grant' | 'misconfigured' | 'retryable';

export interface TokenFailure {
  kind: FailureKind;
  /** OAuth error code when the provider sent one, else ours: `http_<status>`, `timeout`, `network`, `malformed_response`, `response_too_large`. */
  code: string;
  /** Safe to log and publish: never holds a token, a secret or the provider's raw body. */
  message: string;
  httpStatus?: number;
  /** From `Retry-After` (429/503), in milliseconds. */
  retryAfterMs?: number;
}

export type TokenResult = { ok: true; token: IssuedToken } | { ok: false; failure: TokenFailure };

/** The connect flow's code exchange (RFC 6749 §4.1.3 with RFC 7636's verifier). */
export interface CodeExchangeRequest {
  provider: ProviderConfig;
  code: Secret;
  codeVerifier: Secret;
  /** Exactly the redirect_uri of the authorization request. */
  redirectUri: string;
}

/** The HTTP adapter to OAuth token endpoints. */
export interface TokenEndpoint {
  requestToken(request: TokenRequest): Promise<TokenResult>;
  /** Sent once: a provider may revoke the whole grant when a code is presented twice. */
  exchangeCode(request: CodeExchangeRequest): Promise<TokenResult>;
  /** RFC 7009 revocation; resolves when done or when the provider has no revocation endpoint. */
  revoke(provider: ProviderConfig, token: Secret, hint: 'access_token' | 'refresh_token'): Promise<void>;
  /** Releases the connections; nothing is requested after it. */
  close(): Promise<void>;
}
