import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { Secret } from '@tokenkeeper/common';
import { MAX_EXTRAS, NAME_PATTERN, NAME_RULE } from '@tokenkeeper/contracts';
import { interpolateTree, type InterpolationIssue } from './env-interpolation.util.js';
import { PROVIDER_PRESETS } from './provider-presets.js';
import { tokenFieldProblem } from './token-fields.extractor.js';
import { placeholdersOfUrl } from './url-placeholders.policy.js';
import { tenantPatternProblem } from './tenant-access.policy.js';
import { AUTH_METHODS, GRANT_TYPES, PRESET_NAMES, type PresetName, type ProviderConfig } from './provider.types.js';

export type ProvidersFileFormat = 'yaml' | 'json';

export interface ProvidersFileIssue {
  provider?: string;
  field?: string;
  message: string;
}

/** An invalid providers file. The message names provider and field, never a value from the file. */
export class ProvidersFileError extends Error {
  override readonly name = 'ProvidersFileError';

  constructor(
    readonly source: string,
    readonly issues: readonly ProvidersFileIssue[],
  ) {
    super(`${source}: ${issues.map(formatIssue).join('; ')}`);
  }
}

const DEFAULT_THRESHOLD = 0.8;
const DEFAULT_MAX_CONCURRENCY = 8;
const DEFAULT_ON_DEMAND_COOLDOWN_SECONDS = 30;
// Parameters the token client sets itself; an extraParam of that name would be ambiguous.
const RESERVED_PARAMS = new Set(['grant_type', 'refresh_token', 'client_id', 'client_secret', 'scope']);
// Parameters the connect redirect sets itself: an authorizeParam may not override them.
const RESERVED_AUTHORIZE_PARAMS = new Set([
  'response_type',
  'client_id',
  'redirect_uri',
  'state',
  'code_challenge',
  'code_challenge_method',
  'scope',
]);

// YAML is read with the failsafe schema (every scalar a string), so numbers arrive as
// strings, as do `${VAR}`-interpolated ones from either format.
const numeric = (schema: z.ZodNumber) =>
  z.preprocess((v) => (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v), schema).optional();

const entrySchema = z.strictObject({
  preset: z.enum(PRESET_NAMES).optional(),
  tokenUrl: z.string().min(1, 'must not be empty').optional(),
  clientId: z.string().min(1, 'must not be empty'),
  clientSecret: z.string().min(1, 'must not be empty').optional(),
  authMethod: z.enum(AUTH_METHODS).optional(),
  grant: z.enum(GRANT_TYPES).optional(),
  scopes: z.array(z.string().regex(/^\S+$/, 'must be one scope without spaces')).optional(),
  tenants: z.array(z.string()).optional(),
  allowedScopes: z.array(z.string().regex(/^\S+$/, 'must be one scope without spaces')).optional(),
  threshold: numeric(
    z.number().gt(0, 'must be between 0 and 1 (exclusive)').lt(1, 'must be between 0 and 1 (exclusive)'),
  ),
  defaultTtlSeconds: numeric(z.number().int('must be a whole number of seconds').positive('must be positive')),
  revocationUrl: z.string().min(1, 'must not be empty').optional(),
  maxConcurrency: numeric(
    z.number().int('must be an integer').min(1, 'must be at least 1').max(1024, 'must be at most 1024'),
  ),
  onDemandCooldownSeconds: numeric(
    z
      .number()
      .int('must be a whole number of seconds')
      .min(0, 'must be 0 or more')
      .max(86_400, 'must be at most 86400'),
  ),
  keepAliveSeconds: numeric(
    z
      .number()
      .int('must be a whole number of seconds')
      .min(1, 'must be at least 1')
      .max(365 * 86_400, 'must be at most 31536000'),
  ),
  expiryWarningDays: numeric(z.number().min(0, 'must be 0 or more').max(3_650, 'must be at most 3650')),
  extraParams: z.record(z.string(), z.string()).optional(),
  authorizationUrl: z.string().min(1, 'must not be empty').optional(),
  authorizeParams: z.record(z.string(), z.string()).optional(),
  issuer: z.string().min(1, 'must not be empty').optional(),
  allowedReturnOrigins: z.array(z.string()).optional(),
  tokenFields: z.array(z.string()).max(MAX_EXTRAS, `at most ${MAX_EXTRAS} fields`).optional(),
  refreshTokenExpiresInField: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'must be a top-level field name')
    .optional(),
});
type Entry = z.infer<typeof entrySchema>;

/** Generic messages only: zod's defaults are fine, but ours must never quote the input. */
const errorMap = (issue: { code: string; input?: unknown; expected?: string; values?: readonly unknown[] }) => {
  if (issue.code === 'invalid_type') {
    if (issue.input === undefined) return 'required';
    const names: Record<string, string> = { record: 'a map', object: 'a map of settings', array: 'a list' };
    return `must be ${names[issue.expected ?? ''] ?? `a ${issue.expected}`}`;
  }
  if (issue.code === 'invalid_value' && issue.values) return `must be one of ${issue.values.join(', ')}`;
  return undefined;
};

/** Reads, interpolates and validates the providers file (YAML or JSON, by extension). */
export function loadProvidersFile(path: string, env: Record<string, string | undefined>): Map<string, ProviderConfig> {
  const source = `providers file ${path}`;
  const ext = extname(path).toLowerCase();
  const format: ProvidersFileFormat | undefined =
    ext === '.json' ? 'json' : ext === '.yaml' || ext === '.yml' ? 'yaml' : undefined;
  if (!format) throw new ProvidersFileError(source, [{ message: 'must end in .yaml, .yml or .json' }]);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ProvidersFileError(source, [{ message: `cannot be read${code ? ` (${code})` : ''}` }]);
  }
  return parseProvidersDocument(text, format, env, source);
}

/** Pure part of loadProvidersFile: text in, validated providers out, or a ProvidersFileError. */
export function parseProvidersDocument(
  text: string,
  format: ProvidersFileFormat,
  env: Record<string, string | undefined>,
  source = 'providers file',
): Map<string, ProviderConfig> {
  const document = parseText(text, format, source);
  if (!isObject(document))
    throw new ProvidersFileError(source, [{ message: 'must be a map with the key "providers"' }]);
  const unknownKeys = Object.keys(document).filter((key) => key !== 'providers');
  if (unknownKeys.length) {
    throw new ProvidersFileError(
      source,
      unknownKeys.map((key) => ({ field: key, message: 'unknown field' })),
    );
  }
  const providers = document['providers'];
  if (!isObject(providers))
    throw new ProvidersFileError(source, [
      { field: 'providers', message: 'required, a map of provider id to settings' },
    ]);

  const issues: ProvidersFileIssue[] = [];
  const result = new Map<string, ProviderConfig>();
  for (const [id, raw] of Object.entries(providers)) {
    if (!NAME_PATTERN.test(id)) {
      issues.push({ provider: id.slice(0, 64), message: `provider id must match ${NAME_RULE}` });
      continue;
    }
    const config = buildProvider(id, raw, env, issues);
    if (config) result.set(id, config);
  }
  if (issues.length) throw new ProvidersFileError(source, issues);
  return result;
}

function buildProvider(
  id: string,
  raw: unknown,
  env: Record<string, string | undefined>,
  issues: ProvidersFileIssue[],
): ProviderConfig | undefined {
  const interpolationIssues: InterpolationIssue[] = [];
  const interpolated = interpolateTree(raw, env, interpolationIssues);
  if (interpolationIssues.length) {
    for (const issue of interpolationIssues)
      issues.push({ provider: id, field: fieldName(issue.path), message: issue.message });
    return undefined;
  }
  const parsed = entrySchema.safeParse(interpolated ?? {}, { error: errorMap });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys)
          issues.push({ provider: id, field: fieldName([...issue.path, key]), message: 'unknown field' });
      } else {
        issues.push({ provider: id, field: fieldName(issue.path), message: issue.message });
      }
    }
    return undefined;
  }
  const before = issues.length;
  const add = (field: string, message: string) => issues.push({ provider: id, field, message });
  const config = applyPreset(id, parsed.data, add);
  return issues.length === before ? config : undefined;
}

/** Merges preset and file (file wins) and checks what only the merged result can show. */
function applyPreset(
  id: string,
  entry: Entry,
  add: (field: string, message: string) => void,
): ProviderConfig | undefined {
  const presetName = entry.preset ?? 'generic';
  const preset = PROVIDER_PRESETS[presetName];
  const extraParams: Record<string, string> = { ...preset.extraParams, ...entry.extraParams };
  const urlParamValue = preset.urlParam ? extraParams[preset.urlParam] : undefined;
  if (preset.urlParam) delete extraParams[preset.urlParam];

  let tokenUrl = entry.tokenUrl;
  if (tokenUrl === undefined && preset.tokenUrl) {
    if (!preset.urlParam) tokenUrl = preset.tokenUrl;
    else if (urlParamValue === undefined)
      add('tokenUrl', `required (or extraParams.${preset.urlParam} for preset ${presetName})`);
    else if (!/^[A-Za-z0-9.-]{1,253}$/.test(urlParamValue))
      add(`extraParams.${preset.urlParam}`, 'must be a host name or tenant id');
    else tokenUrl = preset.tokenUrl.replace(`{${preset.urlParam}}`, urlParamValue);
  } else if (tokenUrl === undefined) add('tokenUrl', 'required');
  const tokenUrlProblem = tokenUrl === undefined ? undefined : urlProblem(tokenUrl);
  if (tokenUrlProblem) add('tokenUrl', tokenUrlProblem);

  let revocationUrl = entry.revocationUrl ?? preset.revocationUrl;
  if (revocationUrl === undefined && preset.revocationUrlFor && tokenUrl && !tokenUrlProblem) {
    revocationUrl = preset.revocationUrlFor(new URL(tokenUrl));
  }
  const revocationProblem = revocationUrl === undefined ? undefined : urlProblem(revocationUrl);
  if (revocationProblem) add('revocationUrl', revocationProblem);

  const authMethod = entry.authMethod ?? preset.authMethod ?? 'client_secret_basic';
  const grant = entry.grant ?? 'refresh_token';
  if (authMethod !== 'none' && entry.clientSecret === undefined)
    add('clientSecret', `required unless authMethod is none`);
  if (authMethod === 'none' && grant === 'client_credentials')
    add('authMethod', 'none cannot authenticate a client_credentials grant');
  if (preset.requiresScopes && !entry.scopes?.length)
    add('scopes', `required by preset ${presetName} (it rejects token requests without scope)`);
  for (const key of Object.keys(extraParams)) {
    if (RESERVED_PARAMS.has(key)) add(`extraParams.${key}`, 'reserved: set by Tokenkeeper itself');
  }
  entry.tenants?.forEach((pattern, i) => {
    const problem = tenantPatternProblem(pattern);
    if (problem) add(`tenants[${i}]`, problem);
  });
  const connect = connectSettings(entry, presetName, tokenUrl && !tokenUrlProblem ? new URL(tokenUrl) : undefined, add);
  if (!tokenUrl || tokenUrlProblem || revocationProblem || !connect) return undefined;

  const config: ProviderConfig = {
    id,
    preset: presetName,
    tokenUrl,
    clientId: entry.clientId,
    // With authMethod none a secret is never sent, so it is not kept either.
    clientSecret: authMethod === 'none' ? undefined : Secret.of(entry.clientSecret),
    authMethod,
    grant,
    threshold: entry.threshold ?? DEFAULT_THRESHOLD,
    maxConcurrency: entry.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY,
    onDemandCooldownSeconds: entry.onDemandCooldownSeconds ?? DEFAULT_ON_DEMAND_COOLDOWN_SECONDS,
    extraParams,
  };
  const scopes = [...(entry.scopes ?? [])];
  // Without it Microsoft issues no refresh token; client_credentials has none to ask for.
  if (preset.offlineScope && grant === 'refresh_token' && scopes.length && !scopes.includes(preset.offlineScope))
    scopes.unshift(preset.offlineScope);
  if (scopes.length) config.scopes = scopes;
  if (entry.tenants !== undefined) config.tenants = [...entry.tenants];
  if (entry.allowedScopes) config.allowedScopes = [...entry.allowedScopes];
  if (entry.defaultTtlSeconds !== undefined) config.defaultTtlSeconds = entry.defaultTtlSeconds;
  if (entry.keepAliveSeconds !== undefined) config.keepAliveSeconds = entry.keepAliveSeconds;
  if (entry.expiryWarningDays !== undefined) config.expiryWarningDays = entry.expiryWarningDays;
  if (revocationUrl !== undefined) config.revocationUrl = revocationUrl;
  if (preset.errorCodes) config.errorCodes = { ...preset.errorCodes };
  if (preset.tokenType) config.tokenType = preset.tokenType;
  if (preset.rotation) config.rotation = preset.rotation;
  const tokenFields = entry.tokenFields ?? preset.tokenFields;
  tokenFields?.forEach((field, i) => {
    const problem = tokenFieldProblem(field);
    if (problem) add(`tokenFields[${i}]`, problem);
  });
  if (tokenFields?.length) config.tokenFields = [...tokenFields];
  const refreshTokenExpiresInField = entry.refreshTokenExpiresInField ?? preset.refreshTokenExpiresInField;
  if (refreshTokenExpiresInField) config.refreshTokenExpiresInField = refreshTokenExpiresInField;
  if (preset.reuseGraceSeconds !== undefined) config.reuseGraceSeconds = preset.reuseGraceSeconds;
  return Object.assign(config, connect);
}

type ConnectSettings = Pick<ProviderConfig, 'authorizationUrl' | 'authorizeParams' | 'issuer' | 'allowedReturnOrigins'>;

/**
 * The connect-flow fields, preset merged with file (file wins). Undefined when a
 * field is invalid (the issue is added); a preset's derived URLs need a valid token URL.
 */
function connectSettings(
  entry: Entry,
  presetName: PresetName,
  tokenUrl: URL | undefined,
  addIssue: (field: string, message: string) => void,
): ConnectSettings | undefined {
  const preset = PROVIDER_PRESETS[presetName];
  let valid = true;
  const add = (field: string, message: string) => {
    valid = false;
    addIssue(field, message);
  };
  const settings: ConnectSettings = {};
  const authorizationUrl =
    entry.authorizationUrl ?? preset.authorizationUrl ?? (tokenUrl && preset.authorizationUrlFor?.(tokenUrl));
  if (authorizationUrl !== undefined) {
    const problem = urlProblem(authorizationUrl);
    if (problem) add('authorizationUrl', problem);
    else settings.authorizationUrl = authorizationUrl;
  }
  const authorizeParams: Record<string, string> = { ...preset.authorizeParams, ...entry.authorizeParams };
  for (const key of Object.keys(authorizeParams)) {
    if (RESERVED_AUTHORIZE_PARAMS.has(key)) add(`authorizeParams.${key}`, 'reserved: set by Tokenkeeper itself');
  }
  if (Object.keys(authorizeParams).length) settings.authorizeParams = authorizeParams;
  const issuer = entry.issuer ?? preset.issuer ?? (tokenUrl && preset.issuerFor?.(tokenUrl));
  if (issuer !== undefined) {
    const problem =
      urlProblem(issuer) ?? (/[?#]/.test(issuer) ? 'must have no query or fragment (RFC 8414)' : undefined);
    if (problem) add('issuer', problem);
    else settings.issuer = issuer;
  }
  entry.allowedReturnOrigins?.forEach((origin, i) => {
    const problem = originProblem(origin);
    if (problem) add(`allowedReturnOrigins[${i}]`, problem);
  });
  if (entry.allowedReturnOrigins?.length) settings.allowedReturnOrigins = [...entry.allowedReturnOrigins];
  return valid ? settings : undefined;
}

/** An allowed return origin is compared as a string with `new URL(returnUrl).origin`: it must be one already. */
function originProblem(value: string): string | undefined {
  const rule = 'must be exactly an origin: scheme://host[:port], lowercase, no path, no default port';
  if (value.includes('*')) return 'must be exactly an origin (no wildcards)';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return rule;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an http(s) origin';
  return url.origin === value ? undefined : rule;
}

function urlProblem(value: string): string | undefined {
  const placeholders = placeholdersOfUrl(value);
  if ('problem' in placeholders) return placeholders.problem;
  let url: URL;
  try {
    // A placeholder is checked by its place above; the URL around it with a sample value.
    url = new URL(value.replace(/\{[A-Za-z][A-Za-z0-9_]{0,31}\}/g, 'x'));
  } catch {
    return 'must be an http(s) URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an http(s) URL';
  if (url.username || url.password) return 'must not contain credentials (use clientId / clientSecret)';
  return undefined;
}

function parseText(text: string, format: ProvidersFileFormat, source: string): unknown {
  if (format === 'json') {
    try {
      return JSON.parse(text);
    } catch {
      // V8's message quotes the text around the error, which may be a secret.
      throw new ProvidersFileError(source, [{ message: 'invalid JSON' }]);
    }
  }
  const document = parseDocument(text, { schema: 'failsafe' });
  const first = document.errors[0];
  if (first) {
    // Position and code only: yaml's (pretty) message quotes the offending line.
    const at = first.linePos?.[0];
    throw new ProvidersFileError(source, [
      { message: `invalid YAML (${first.code}${at ? ` at line ${at.line}, column ${at.col}` : ''})` },
    ]);
  }
  return document.toJS({ maxAliasCount: 100 });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function fieldName(path: readonly PropertyKey[]): string {
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

function formatIssue(issue: ProvidersFileIssue): string {
  const parts: string[] = [];
  if (issue.provider !== undefined) parts.push(`provider ${JSON.stringify(issue.provider)}`);
  if (issue.field) parts.push(issue.field);
  parts.push(issue.message);
  return parts.join(': ');
}
