import type { AuthMethod, FailureKind, PresetName, RefreshTokenRotation } from './provider.types.js';

/**
 * What a preset knows about a provider. Everything is a default: a value in the providers
 * file wins, and `extraParams` from both are merged (file over preset).
 */
export interface ProviderPreset {
  /** May contain `{tenant}` or `{domain}`, see `urlParam`. */
  tokenUrl?: string;
  revocationUrl?: string;
  authMethod?: AuthMethod;
  extraParams?: Record<string, string>;
  errorCodes?: Record<string, FailureKind>;
  tokenType?: string;
  rotation?: RefreshTokenRotation;
  /**
   * The token URL depends on the customer's tenant or domain. When the file gives no
   * `tokenUrl`, the placeholder is filled from `extraParams[urlParam]`, which is then
   * removed so it is never sent to the provider (it is not an OAuth parameter).
   */
  urlParam?: 'tenant' | 'domain';
  /** The provider rejects token requests without `scope`: the file must list `scopes`. */
  requiresScopes?: boolean;
  /** Revocation endpoint of the same authorization server, derived from the final token URL. */
  revocationUrlFor?: (tokenUrl: URL) => string;
  /** Authorization endpoint when it does not depend on the tenant or domain. */
  authorizationUrl?: string;
  /** Authorization endpoint of the same server, derived from the final token URL (tenant, domain, authorization server). */
  authorizationUrlFor?: (tokenUrl: URL) => string;
  /** Query parameters added to the authorization redirect; merged with the file's (file wins). */
  authorizeParams?: Record<string, string>;
  /** RFC 9207 issuer the callback's `iss` must equal, fixed or derived from the final token URL. */
  issuer?: string;
  issuerFor?: (tokenUrl: URL) => string;
  /**
   * A scope without which the provider issues no refresh token. The loader adds it to the
   * file's scopes for the refresh_token grant, so a connect flow cannot end without one.
   */
  offlineScope?: string;
  /** Token-response fields kept as `extras` (the file's `tokenFields` replaces them). */
  tokenFields?: string[];
  /** Where the provider puts the refresh token's lifetime in seconds, when not `refresh_token_expires_in`. */
  refreshTokenExpiresInField?: string;
  /** How long a rotated-out refresh token still works at the provider. */
  reuseGraceSeconds?: number;
}

/** `…/token` → `…/authorize` on the same server (Microsoft's tenant path, Okta's authorization server). */
const siblingAuthorize = (tokenUrl: URL): string =>
  `${tokenUrl.origin}${tokenUrl.pathname.replace(/\/token$/, '/authorize')}`;

/**
 * GitHub (OAuth Apps and GitHub Apps).
 * - Without `Accept: application/json` it answers form-encoded (we always send it).
 * - Errors come inside HTTP 200 (`{"error":"bad_refresh_token",...}`), never as 400.
 * - OAuth App tokens do not expire (no `expires_in`: stored, never refreshed). GitHub App
 *   user tokens with expiry enabled last 8 h, their refresh tokens 6 months, and every
 *   refresh rotates the refresh token (the old one stops working).
 * - Revocation is a REST call (`DELETE /applications/{client_id}/token`), not RFC 7009: none here.
 * - Its docs pass client_id/client_secret in the body.
 */
const github: ProviderPreset = {
  tokenUrl: 'https://github.com/login/oauth/access_token',
  // GitHub sends no `iss` on its redirect (no RFC 9207), so no issuer is declared.
  authorizationUrl: 'https://github.com/login/oauth/authorize',
  authMethod: 'client_secret_post',
  rotation: 'rotates',
  errorCodes: {
    bad_refresh_token: 'invalid_grant',
    bad_verification_code: 'invalid_grant',
    incorrect_client_credentials: 'misconfigured',
    redirect_uri_mismatch: 'misconfigured',
    unverified_user_email: 'misconfigured',
  },
};

/**
 * Google.
 * - Does not rotate: a refresh response omits `refresh_token`, and the old one stays valid.
 * - Refresh tokens of apps in "testing" publishing status die after 7 days (`invalid_grant`).
 * - RFC 7009-style revocation at oauth2.googleapis.com/revoke (revoking either token kills the grant).
 * - Issues a refresh token only with `access_type=offline`, and again on a re-consent only with
 *   `prompt=consent`; its authorization responses carry `iss` (RFC 9207).
 */
const google: ProviderPreset = {
  tokenUrl: 'https://oauth2.googleapis.com/token',
  revocationUrl: 'https://oauth2.googleapis.com/revoke',
  authorizationUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
  authorizeParams: { access_type: 'offline', prompt: 'consent' },
  issuer: 'https://accounts.google.com',
  authMethod: 'client_secret_post',
  rotation: 'none',
};

/**
 * Microsoft identity platform (Entra ID, v2.0 endpoint).
 * - The token URL contains the tenant: give `tokenUrl`, or `extraParams.tenant` (a tenant id,
 *   a domain, or `common` / `organizations` / `consumers`).
 * - Requires `scope` on refresh as well (`offline_access` plus the API scopes; for
 *   client_credentials `https://graph.microsoft.com/.default`-style scopes).
 * - Rotates refresh tokens: always store the new one.
 * - No RFC 7009 endpoint (sessions are revoked through Graph): none here.
 * - Client secrets often contain `~` and `.`; client_secret_post avoids relying on the
 *   server form-decoding HTTP Basic credentials.
 * - Issues a refresh token only when `offline_access` is among the scopes: the loader adds it
 *   for the refresh_token grant. The authorization endpoint sits next to the token endpoint
 *   (same tenant). No issuer is declared: the v2.0 issuer names the tenant id, which a
 *   `common` / `organizations` URL does not know in advance.
 */
const microsoft: ProviderPreset = {
  tokenUrl: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token',
  urlParam: 'tenant',
  authorizationUrlFor: siblingAuthorize,
  offlineScope: 'offline_access',
  authMethod: 'client_secret_post',
  requiresScopes: true,
  rotation: 'rotates',
  // The directory (tenant) the user signed in to, from the id_token of an openid grant.
  tokenFields: ['id_token.tid'],
};

/**
 * Auth0.
 * - Token URL is per tenant: `https://{domain}/oauth/token` (give `tokenUrl` or `extraParams.domain`).
 * - Refresh-token rotation with reuse detection: presenting a used refresh token revokes the
 *   whole family, so two requests must never carry the same refresh token.
 * - client_credentials needs `audience` (set it in `extraParams`).
 * - An application accepts only its configured auth method; Auth0's default is "Post".
 * - Revocation (RFC 7009) at `/oauth/revoke`.
 * - Authorization at `https://{domain}/authorize`; the issuer is `https://{domain}/` (trailing slash).
 */
const auth0: ProviderPreset = {
  tokenUrl: 'https://{domain}/oauth/token',
  urlParam: 'domain',
  authMethod: 'client_secret_post',
  rotation: 'rotates_with_reuse_detection',
  revocationUrlFor: (tokenUrl) => `${tokenUrl.origin}/oauth/revoke`,
  authorizationUrlFor: (tokenUrl) => `${tokenUrl.origin}/authorize`,
  issuerFor: (tokenUrl) => `${tokenUrl.origin}/`,
};

/**
 * Okta.
 * - Token URL is per org and authorization server: `https://{domain}/oauth2/default/v1/token`
 *   (give `tokenUrl` for another authorization server, or `extraParams.domain`).
 * - Rotation with reuse detection (a grace period of 0–60 s is configurable): as Auth0.
 * - An app accepts only its configured auth method; web apps default to client_secret_basic.
 * - Revocation (RFC 7009) at `.../v1/revoke`, next to the token endpoint.
 * - Authorization at `.../v1/authorize`; the issuer is the authorization server's base URL
 *   (the token URL without `/v1/token`).
 */
const okta: ProviderPreset = {
  tokenUrl: 'https://{domain}/oauth2/default/v1/token',
  urlParam: 'domain',
  authMethod: 'client_secret_basic',
  rotation: 'rotates_with_reuse_detection',
  revocationUrlFor: (tokenUrl) => `${tokenUrl.origin}${tokenUrl.pathname.replace(/\/token$/, '/revoke')}`,
  authorizationUrlFor: siblingAuthorize,
  issuerFor: (tokenUrl) => `${tokenUrl.origin}${tokenUrl.pathname.replace(/\/v1\/token$/, '')}`,
};

/**
 * Slack (oauth.v2.access with token rotation enabled).
 * - Errors come inside HTTP 200 as `{"ok":false,"error":"invalid_refresh_token"}`.
 * - With rotation, access tokens expire after 12 h (`expires_in: 43200`); each exchange may
 *   return a new refresh token, which must be stored.
 * - `token_type` is `bot` or `user`; the Web API takes them as `Bearer`, so that is reported.
 * - `auth.revoke` takes the access token and is not RFC 7009: none here.
 * - Authorization at slack.com/oauth/v2/authorize; `scope` is the bot scopes, user scopes go in
 *   `authorizeParams.user_scope` (app-specific, so the preset sets none). No `iss` is sent.
 */
const slack: ProviderPreset = {
  tokenUrl: 'https://slack.com/api/oauth.v2.access',
  authorizationUrl: 'https://slack.com/oauth/v2/authorize',
  authMethod: 'client_secret_post',
  tokenType: 'Bearer',
  rotation: 'rotates',
  tokenFields: ['team.id', 'team.name'],
  errorCodes: {
    invalid_refresh_token: 'invalid_grant',
    token_revoked: 'invalid_grant',
    token_expired: 'invalid_grant',
    invalid_code: 'invalid_grant',
    account_inactive: 'invalid_grant',
    app_uninstalled: 'invalid_grant',
    invalid_client_id: 'misconfigured',
    bad_client_secret: 'misconfigured',
    invalid_grant_type: 'misconfigured',
    bad_redirect_uri: 'misconfigured',
    ratelimited: 'retryable',
    internal_error: 'retryable',
    fatal_error: 'retryable',
    service_unavailable: 'retryable',
    request_timeout: 'retryable',
  },
};

/**
 * Salesforce (web server flow).
 * - The token response has no `expires_in`: the token is kept alive by refreshing on a timer
 *   (`keepAliveSeconds`); `instance_url` (the org's API host) is kept as an extra.
 * - The refresh token does not rotate. Errors are RFC 6749 (`invalid_grant` with
 *   "expired access/refresh token").
 * - login.salesforce.com serves production orgs; a sandbox or a My Domain uses its own host:
 *   set `tokenUrl: https://{instance}.my.salesforce.com/services/oauth2/token` (and the
 *   authorize URL alike) and give `connectionConfig.instance` per connection.
 */
const salesforce: ProviderPreset = {
  tokenUrl: 'https://login.salesforce.com/services/oauth2/token',
  authorizationUrl: 'https://login.salesforce.com/services/oauth2/authorize',
  revocationUrl: 'https://login.salesforce.com/services/oauth2/revoke',
  authMethod: 'client_secret_post',
  rotation: 'none',
  tokenFields: ['instance_url', 'id', 'issued_at'],
};

/** HubSpot: 30-minute access tokens (`expires_in: 1800`), refresh token does not rotate; body credentials. */
const hubspot: ProviderPreset = {
  tokenUrl: 'https://api.hubapi.com/oauth/v1/token',
  authorizationUrl: 'https://app.hubspot.com/oauth/authorize',
  authMethod: 'client_secret_post',
  rotation: 'none',
};

/**
 * Xero: 30-minute access tokens; every refresh rotates the refresh token, and the previous
 * one is still accepted for 30 minutes (a lost answer can be retried); unused refresh tokens
 * end after 60 days. `offline_access` is needed for a refresh token.
 */
const xero: ProviderPreset = {
  tokenUrl: 'https://identity.xero.com/connect/token',
  authorizationUrl: 'https://login.xero.com/identity/connect/authorize',
  revocationUrl: 'https://identity.xero.com/connect/revocation',
  authMethod: 'client_secret_basic',
  rotation: 'rotates',
  reuseGraceSeconds: 1_800,
  offlineScope: 'offline_access',
  tokenFields: ['id_token.xero_userid'],
};

/** Zoom: 1-hour access tokens, the refresh token rotates on each use; client authentication by Basic. */
const zoom: ProviderPreset = {
  tokenUrl: 'https://zoom.us/oauth/token',
  authorizationUrl: 'https://zoom.us/oauth/authorize',
  revocationUrl: 'https://zoom.us/oauth/revoke',
  authMethod: 'client_secret_basic',
  rotation: 'rotates',
};

/**
 * Shopify: every URL is the shop's own (`{shop}.myshopify.com`): give
 * `connectionConfig.shop` per connection. Offline access tokens do not expire and come
 * without a refresh token (stored, served, never refreshed); `scope` is echoed.
 */
const shopify: ProviderPreset = {
  tokenUrl: 'https://{shop}.myshopify.com/admin/oauth/access_token',
  authorizationUrl: 'https://{shop}.myshopify.com/admin/oauth/authorize',
  authMethod: 'client_secret_post',
  rotation: 'none',
};

/**
 * Atlassian (Jira, Confluence: OAuth 2.0 3LO): rotating refresh tokens (the old one stops
 * working), 1-hour access tokens; `offline_access` is needed for a refresh token and
 * `audience=api.atlassian.com` on authorize. The site (`cloudid`) a token can reach comes
 * from `https://api.atlassian.com/oauth/token/accessible-resources`, not the token response.
 */
const atlassian: ProviderPreset = {
  tokenUrl: 'https://auth.atlassian.com/oauth/token',
  authorizationUrl: 'https://auth.atlassian.com/authorize',
  authMethod: 'client_secret_post',
  rotation: 'rotates',
  offlineScope: 'offline_access',
  authorizeParams: { audience: 'api.atlassian.com', prompt: 'consent' },
};

/**
 * Notion: access tokens without `expires_in` (not refreshed on a timer) unless the integration
 * issues refresh tokens; client authentication by Basic; the workspace is kept as extras.
 */
const notion: ProviderPreset = {
  tokenUrl: 'https://api.notion.com/v1/oauth/token',
  authorizationUrl: 'https://api.notion.com/v1/oauth/authorize',
  authMethod: 'client_secret_basic',
  rotation: 'none',
  authorizeParams: { owner: 'user' },
  tokenFields: ['workspace_id', 'workspace_name', 'bot_id'],
};

/**
 * Dropbox: 4-hour access tokens; a refresh token only with `token_access_type=offline` on
 * authorize; the refresh token does not rotate (a refresh answers without one).
 */
const dropbox: ProviderPreset = {
  tokenUrl: 'https://api.dropboxapi.com/oauth2/token',
  authorizationUrl: 'https://www.dropbox.com/oauth2/authorize',
  authMethod: 'client_secret_post',
  rotation: 'none',
  authorizeParams: { token_access_type: 'offline' },
  tokenFields: ['account_id', 'uid'],
};

/**
 * LinkedIn: 60-day access tokens; refresh tokens (programmatic refresh, for approved apps)
 * last 365 days from the grant and do not extend on use: `refresh_token_expires_in` says when.
 */
const linkedin: ProviderPreset = {
  tokenUrl: 'https://www.linkedin.com/oauth/v2/accessToken',
  authorizationUrl: 'https://www.linkedin.com/oauth/v2/authorization',
  revocationUrl: 'https://www.linkedin.com/oauth/v2/revoke',
  authMethod: 'client_secret_post',
  rotation: 'none',
  refreshTokenExpiresInField: 'refresh_token_expires_in',
};

/**
 * Intuit (QuickBooks Online): 1-hour access tokens; the refresh token rotates (use the newest
 * one) and ends 100 days after issue, said in `x_refresh_token_expires_in`. The company id
 * (`realmId`) comes on the authorize callback, not in the token response: give it as metadata.
 */
const intuit: ProviderPreset = {
  tokenUrl: 'https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer',
  authorizationUrl: 'https://appcenter.intuit.com/connect/oauth2',
  revocationUrl: 'https://developer.api.intuit.com/v2/oauth2/tokens/revoke',
  authMethod: 'client_secret_basic',
  rotation: 'rotates',
  refreshTokenExpiresInField: 'x_refresh_token_expires_in',
};

/** Any RFC 6749 server: nothing assumed, the file gives every endpoint. */
const generic: ProviderPreset = {};

export const PROVIDER_PRESETS: Readonly<Record<PresetName, Readonly<ProviderPreset>>> = Object.freeze({
  github,
  google,
  microsoft,
  auth0,
  okta,
  slack,
  salesforce,
  hubspot,
  xero,
  zoom,
  shopify,
  atlassian,
  notion,
  dropbox,
  linkedin,
  intuit,
  generic,
});
