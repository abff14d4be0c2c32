import { Logger } from '@nestjs/common';
import { Secret } from '@tokenkeeper/common';
import type { FailureKind, IssuedToken, ProviderConfig, TokenFailure, TokenResult } from './provider.types.js';
import { extractTokenFields } from './token-fields.extractor.js';

/** RFC 6749 §5.2 (and RFC 7009 §2.2.1) codes; presets add provider-specific ones. */
const STANDARD_ERROR_CODES: Readonly<Record<string, FailureKind>> = {
  invalid_grant: 'invalid_grant',
  invalid_client: 'misconfigured',
  unauthorized_client: 'misconfigured',
  unsupported_grant_type: 'misconfigured',
  invalid_scope: 'misconfigured',
  invalid_request: 'misconfigured',
  access_denied: 'misconfigured',
  unsupported_token_type: 'misconfigured',
  temporarily_unavailable: 'retryable',
  server_error: 'retryable',
  slow_down: 'retryable',
};

const RETRY_AFTER_CAP_MS = 3_600_000;
/**
 * Longest lifetime (`expires_in`, `refresh_in`) taken from a provider: one year. Beyond
 * that a value is a bug or a hostile answer (1e13 s is past what a Date can hold, and the
 * commit of a rotated refresh token would fail on it); a year still means "refresh about
 * yearly", which keeps the credential alive, where "no expiry" would never refresh it.
 */
export const MAX_LIFETIME_SECONDS = 365 * 24 * 3600;
/** Longest refresh-token lifetime taken from a provider: ten years (grants do live for years). */
export const MAX_REFRESH_TOKEN_LIFETIME_SECONDS = 10 * MAX_LIFETIME_SECONDS;
/** Where a token response says how long its refresh token lives, unless the provider names another field. */
export const DEFAULT_REFRESH_TOKEN_LIFETIME_FIELD = 'refresh_token_expires_in';

const logger = new Logger('TokenResponseClassifier');
const DESCRIPTION_MAX = 200;
// Shortest fragment of a secret that, found in a provider's text, makes us drop that text:
// long enough not to match ordinary words ("_refresh"), short enough to catch truncated echoes.
const FRAGMENT = 12;

export interface RawTokenResponse {
  status: number;
  contentType?: string;
  retryAfter?: string;
  body: string;
}

/** Turns an HTTP answer of a token endpoint into a TokenResult. Never throws. */
export function classifyTokenResponse(
  response: RawTokenResponse,
  provider: Pick<ProviderConfig, 'errorCodes' | 'tokenType'> &
    Partial<Pick<ProviderConfig, 'tokenFields' | 'refreshTokenExpiresInField'>> & { id?: string },
  requestedAt: Date,
  secrets: readonly string[],
  now: number = Date.now(),
): TokenResult {
  const { status } = response;
  const json = parseObject(response.body);
  const hasError = json !== undefined && json['error'] !== undefined && json['error'] !== null;
  const slackNotOk = json !== undefined && json['ok'] === false;
  const accessToken = json?.['access_token'];

  if (status >= 200 && status < 300 && json && !hasError && !slackNotOk) {
    if (typeof accessToken === 'string' && accessToken !== '') {
      return { ok: true, token: toIssuedToken(json, accessToken, provider, requestedAt) };
    }
  }

  // The body may echo anything we sent (or the access token next to an error): none of it may leak.
  const unsafe = typeof accessToken === 'string' && accessToken !== '' ? [...secrets, accessToken] : secrets;
  const rawCode = hasError ? json['error'] : undefined;
  const code = typeof rawCode === 'string' ? safeCode(rawCode, unsafe) : hasError ? 'unrecognized_error' : undefined;
  const description = code ? safeDescription(json?.['error_description'], unsafe) : undefined;
  const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(response.retryAfter, now) : undefined;

  const fail = (kind: FailureKind, failureCode: string, message: string): TokenResult => {
    const failure: TokenFailure = { kind, code: failureCode, message, httpStatus: status };
    if (retryAfterMs !== undefined) failure.retryAfterMs = retryAfterMs;
    return { ok: false, failure };
  };
  const withCode = (c: string) => `HTTP ${status} ${c}${description ? `: ${description}` : ''}`;

  // A 5xx/408/429 is transient whatever its body says: a proxy's "invalid_grant" must not end a credential.
  if (status >= 500 || status === 408 || status === 429) {
    const c = code ?? `http_${status}`;
    return fail('retryable', c, withCode(c));
  }
  if (code) {
    // A code neither RFC 6749 nor the preset knows says nothing about our configuration:
    // back off as for any transient fault, rather than park the credential for
    // the misconfiguration delay. The code itself stays in the failure's message.
    const kind = provider.errorCodes?.[code] ?? STANDARD_ERROR_CODES[code] ?? 'retryable';
    return fail(kind, code, withCode(code));
  }
  if (status === 401)
    return fail('misconfigured', 'invalid_client', `HTTP 401 without an OAuth error: client authentication failed`);
  if (status >= 300 && status < 400) {
    return fail('misconfigured', `http_${status}`, `HTTP ${status}: token endpoint redirects; configure the final URL`);
  }
  if (status >= 400) return fail('misconfigured', `http_${status}`, `HTTP ${status} without an OAuth error`);
  const what = json
    ? slackNotOk
      ? '"ok":false without an error code'
      : 'JSON without access_token'
    : describeBody(response);
  return fail('retryable', 'malformed_response', `HTTP ${status} is not a token response: ${what}`);
}

function toIssuedToken(
  json: Record<string, unknown>,
  accessToken: string,
  provider: Pick<ProviderConfig, 'tokenType'> &
    Partial<Pick<ProviderConfig, 'tokenFields' | 'refreshTokenExpiresInField'>> & { id?: string },
  requestedAt: Date,
): IssuedToken {
  const rawType = json['token_type'];
  let tokenType = typeof rawType === 'string' && rawType !== '' ? rawType : 'Bearer';
  if (tokenType.toLowerCase() === 'bearer') tokenType = 'Bearer';
  if (provider.tokenType) tokenType = provider.tokenType;
  const refresh = json['refresh_token'];
  const scope = json['scope'];
  const scopeText = Array.isArray(scope) ? scope.filter((s) => typeof s === 'string').join(' ') : scope;
  const refreshTokenLifetimeField = provider.refreshTokenExpiresInField ?? DEFAULT_REFRESH_TOKEN_LIFETIME_FIELD;
  const issued: IssuedToken = {
    accessToken: new Secret(accessToken),
    refreshToken: typeof refresh === 'string' ? Secret.of(refresh) : undefined,
    tokenType,
    expiresInSeconds: clampLifetime(parseSeconds(json['expires_in']), 'expires_in', provider.id),
    refreshInSeconds: clampLifetime(parseSeconds(json['refresh_in']), 'refresh_in', provider.id),
    // GitHub Apps, LinkedIn and others say `refresh_token_expires_in`; a provider that names it
    // otherwise (Intuit: `x_refresh_token_expires_in`) says so in its preset or entry.
    refreshTokenExpiresInSeconds: clampLifetime(
      parseSeconds(json[refreshTokenLifetimeField]),
      refreshTokenLifetimeField,
      provider.id,
      MAX_REFRESH_TOKEN_LIFETIME_SECONDS,
    ),
    scope: typeof scopeText === 'string' && scopeText !== '' ? scopeText : undefined,
    requestedAt,
  };
  const extras = extractTokenFields(json, provider.tokenFields);
  if (extras) issued.extras = extras;
  return issued;
}

function parseObject(body: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body);
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** `expires_in` and friends: a number or a numeric string; anything else is ignored. */
export function parseSeconds(value: unknown): number | undefined {
  const n =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value)
        ? Number(value)
        : NaN;
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** Caps a provider's lifetime at MAX_LIFETIME_SECONDS, saying so (the number is no secret). */
function clampLifetime(
  seconds: number | undefined,
  field: string,
  providerId: string | undefined,
  max = MAX_LIFETIME_SECONDS,
): number | undefined {
  if (seconds === undefined || seconds <= max) return seconds;
  logger.warn({
    msg: `token response ${field} is beyond ${max} s; clamped`,
    provider: providerId,
    field,
    received: seconds,
    usedSeconds: max,
  });
  return max;
}

/** RFC 9110 §10.2.3: delta-seconds or an HTTP-date; capped so a hostile header cannot park a credential. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = at - now;
  }
  return Math.min(Math.max(0, Math.round(ms)), RETRY_AFTER_CAP_MS);
}

/** Polynomial rolling hash of FRAGMENT characters, mod 2^32 (base: the 32-bit FNV prime). */
const HASH_BASE = 0x01000193;
let HASH_TOP = 1; // HASH_BASE^(FRAGMENT-1) mod 2^32: the weight of the character leaving the window
for (let i = 1; i < FRAGMENT; i++) HASH_TOP = Math.imul(HASH_TOP, HASH_BASE) >>> 0;

function windowHash(text: string, start: number): number {
  let h = 0;
  for (let i = start; i < start + FRAGMENT; i++) h = (Math.imul(h, HASH_BASE) + text.charCodeAt(i)) >>> 0;
  return h;
}

/**
 * True when `text` contains a secret, or any FRAGMENT-long piece of one (a truncated echo).
 *
 * The text is the provider's, so the work must not grow with |secret|·|text| (the old
 * search ran one `includes` over a 60 KB error body per window of a 1 KB JWT). Here every
 * FRAGMENT-long window of every long secret is hashed into a table (O(Σ|secret|)), and a
 * rolling hash walks the text once, O(1) per position; only a hash hit costs a FRAGMENT-long
 * comparison, against the few windows sharing that hash: linear in |text| + Σ|secret|.
 * It finds exactly what the old search found: text holds some FRAGMENT-long piece of a
 * secret iff one of the text's FRAGMENT-long windows equals one of the secret's, and equal
 * windows have equal hashes. Secrets no longer than FRAGMENT are still searched whole with
 * `includes`, whose cost is bounded by |text|·FRAGMENT.
 */
export function leaksSecret(text: string, secrets: readonly string[]): boolean {
  const pieces = new Map<number, string[]>();
  for (const secret of secrets) {
    if (secret === '') continue;
    if (secret.length <= FRAGMENT) {
      if (text.includes(secret)) return true;
      continue;
    }
    for (let i = 0; i + FRAGMENT <= secret.length; i++) {
      const h = windowHash(secret, i);
      const bucket = pieces.get(h);
      const piece = secret.slice(i, i + FRAGMENT);
      if (!bucket) pieces.set(h, [piece]);
      else if (!bucket.includes(piece)) bucket.push(piece);
    }
  }
  if (pieces.size === 0 || text.length < FRAGMENT) return false;
  let h = windowHash(text, 0);
  for (let i = 0; ; i++) {
    const bucket = pieces.get(h);
    if (bucket && bucket.some((piece) => text.startsWith(piece, i))) return true;
    if (i + FRAGMENT >= text.length) return false;
    h =
      (Math.imul((h - Math.imul(text.charCodeAt(i), HASH_TOP)) >>> 0, HASH_BASE) + text.charCodeAt(i + FRAGMENT)) >>> 0;
  }
}

function safeCode(code: string, secrets: readonly string[]): string {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(code) && !leaksSecret(code, secrets) ? code : 'unrecognized_error';
}

/**
 * The provider's error_description helps operators, but providers echo requests into it.
 * Dropped if it holds any piece of a secret; long token-looking runs are masked anyway.
 */
export function safeDescription(value: unknown, secrets: readonly string[]): string | undefined {
  if (typeof value !== 'string' || leaksSecret(value, secrets)) return undefined;
  const cleaned = value
    // eslint-disable-next-line no-control-regex -- control characters are what this strips
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .replace(/[A-Za-z0-9+/=_~.%-]{32,}/g, '[redacted]')
    .trim()
    .slice(0, DESCRIPTION_MAX);
  return cleaned === '' ? undefined : cleaned;
}

function describeBody(response: RawTokenResponse): string {
  const type = response.contentType?.split(';')[0]?.trim().toLowerCase();
  const safeType = type && /^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(type) ? type : undefined;
  if (safeType === 'text/html' || /^\s*</.test(response.body)) return `HTML page${safeType ? ` (${safeType})` : ''}`;
  if (safeType === 'application/x-www-form-urlencoded' || /^[\w.-]+=/.test(response.body)) return 'form-encoded body';
  if (response.body.trim() === '') return 'empty body';
  return `not a JSON object${safeType ? ` (${safeType})` : ''}`;
}
