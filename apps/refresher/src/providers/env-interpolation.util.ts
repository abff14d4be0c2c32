/**
 * `${VAR}` interpolation for the providers file, applied to parsed string values rather
 * than to the raw text: a secret containing quotes, `#` or newlines can then never change
 * the document's structure.
 *
 * - `${VAR}`: the variable's value; unset or empty is an error (an empty secret is a mistake).
 * - `${VAR:-default}`: the default when the variable is unset or empty (shell semantics).
 * - `$$`: a literal `$` (as in docker compose), e.g. `$${NOT_A_VAR}`.
 *
 * What may be read: any variable except Tokenkeeper's own settings (isReservedVariable).
 * The providers file is meant for provider credentials; without this rule a line such as
 * `clientSecret: ${TOKEN_ENCRYPTION_KEYS}` would send the master keys (or the database or
 * NATS password) to whatever token endpoint the file names. A deny list, not an allow list,
 * because users name their provider variables freely (`${GITHUB_CLIENT_SECRET}`).
 */

export interface InterpolationIssue {
  /** Path of the value inside the interpolated tree, e.g. `['clientSecret']`. */
  path: (string | number)[];
  message: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Tokenkeeper's own settings, refresher and audit app (a spec checks that every variable
 * their configs read is covered): whole families by prefix, so that a setting added later
 * (`DATABASE_STATEMENT_TIMEOUT_MS`, `NATS_TLS_…`) is covered too, plus libpq's `PG…`
 * variables, which the PostgreSQL driver reads for the database password.
 */
const RESERVED_PREFIXES =
  /^(NATS_|DATABASE_|AUDIT_|TOKEN_|EVENT_|REFRESH_|CLAIM_|BACKOFF_|LEASE_|SHUTDOWN_|CONNECT_|WEBHOOK_|PG[A-Z])/;
const RESERVED_NAMES = new Set([
  'NODE_ENV',
  'PROVIDERS_FILE',
  'HTTP_PORT',
  'PUBLIC_HTTP_PORT',
  'PUBLIC_BASE_URL',
  'LOG_LEVEL',
  'REPLICA_ID',
  'MAX_REFRESHES_IN_FLIGHT',
  'MISCONFIGURED_RETRY_MS',
  'REPLY_SUBJECT_PREFIXES',
  'SIGNATURE_MAX_AGE_SECONDS',
]);

/** True for a variable the providers file may not read. Case-insensitive, as Windows' environment is. */
export function isReservedVariable(name: string): boolean {
  const upper = name.toUpperCase();
  return RESERVED_NAMES.has(upper) || RESERVED_PREFIXES.test(upper);
}

/** Interpolates one string; returns the issue instead of throwing so callers can name the field. */
export function interpolateString(
  value: string,
  env: Record<string, string | undefined>,
): { ok: true; value: string } | { ok: false; message: string } {
  if (!value.includes('$')) return { ok: true, value };
  let out = '';
  let i = 0;
  while (i < value.length) {
    const dollar = value.indexOf('$', i);
    if (dollar === -1) {
      out += value.slice(i);
      break;
    }
    out += value.slice(i, dollar);
    const next = value[dollar + 1];
    if (next === '$') {
      out += '$';
      i = dollar + 2;
      continue;
    }
    if (next !== '{') {
      out += '$';
      i = dollar + 1;
      continue;
    }
    const close = value.indexOf('}', dollar + 2);
    // The expression is not echoed: it may sit inside a secret.
    if (close === -1) return { ok: false, message: 'unterminated ${…} expression' };
    const expression = value.slice(dollar + 2, close);
    const separator = expression.indexOf(':-');
    const name = separator === -1 ? expression : expression.slice(0, separator);
    if (!NAME.test(name))
      return { ok: false, message: 'invalid ${…} expression (expected ${NAME} or ${NAME:-default})' };
    // Refused even with a default: the rule must not depend on whether the variable is set.
    if (isReservedVariable(name)) {
      return {
        ok: false,
        message: `environment variable ${name} is one of Tokenkeeper's own settings; the providers file may not read it`,
      };
    }
    const fromEnv = env[name];
    if (fromEnv !== undefined && fromEnv !== '') out += fromEnv;
    else if (separator !== -1) out += expression.slice(separator + 2);
    else return { ok: false, message: `environment variable ${name} is not set` };
    i = close + 1;
  }
  return { ok: true, value: out };
}

/** Interpolates every string in a parsed JSON/YAML tree (not the keys); collects all issues. */
export function interpolateTree(
  node: unknown,
  env: Record<string, string | undefined>,
  issues: InterpolationIssue[],
  path: (string | number)[] = [],
): unknown {
  if (typeof node === 'string') {
    const result = interpolateString(node, env);
    if (result.ok) return result.value;
    issues.push({ path, message: result.message });
    return node;
  }
  if (Array.isArray(node)) return node.map((item, index) => interpolateTree(item, env, issues, [...path, index]));
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) out[key] = interpolateTree(value, env, issues, [...path, key]);
    return out;
  }
  return node;
}
