import { MAX_EXTRA_VALUE_LENGTH, MAX_EXTRAS } from '@tokenkeeper/contracts';

/**
 * `tokenFields`: the non-secret fields of a token response that make a token usable
 * (Salesforce's `instance_url`, Slack's `team.id`), kept with the credential and served as
 * `extras`. A name is a dotted path into the JSON answer, flattened to that name
 * (`team.name` → `extras["team.name"]`); a path through `id_token` reads a claim of the
 * JWT's payload, decoded without verifying (the provider sent it over TLS to us, and only
 * the named claims leave, never the token). Only strings, numbers and booleans are kept.
 */

/** The token response's secrets: never a field of their own, whatever a providers file says. */
export const SECRET_RESPONSE_FIELDS = new Set(['access_token', 'refresh_token', 'id_token']);
const NAME = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,3}$/;

/** A problem text for a `tokenFields` entry, else undefined. */
export function tokenFieldProblem(name: string): string | undefined {
  if (!NAME.test(name)) return 'must be a field name or a dotted path (at most 4 parts)';
  if (SECRET_RESPONSE_FIELDS.has(name)) return `"${name}" is a secret and cannot be kept as an extra`;
  if (name.startsWith('access_token.') || name.startsWith('refresh_token.'))
    return `"${name}" reads into a secret and cannot be kept as an extra`;
  return undefined;
}

/** The named fields found in `json`; undefined when none is (the stored ones then stay). */
export function extractTokenFields(
  json: Record<string, unknown>,
  names: readonly string[] | undefined,
): Record<string, string> | undefined {
  if (!names?.length) return undefined;
  const extras: Record<string, string> = {};
  let count = 0;
  for (const name of names.slice(0, MAX_EXTRAS)) {
    const value = lookup(json, name.split('.'));
    if (value === undefined) continue;
    extras[name] = value;
    count++;
  }
  return count > 0 ? extras : undefined;
}

function lookup(json: Record<string, unknown>, path: string[]): string | undefined {
  let node: unknown = json;
  for (let i = 0; i < path.length; i++) {
    const part = path[i];
    if (i === 0 && part === 'id_token') {
      node = typeof json['id_token'] === 'string' ? jwtPayload(json['id_token']) : undefined;
      continue;
    }
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  if (typeof node === 'string') return node.length <= MAX_EXTRA_VALUE_LENGTH ? node : undefined;
  if (typeof node === 'number' || typeof node === 'boolean') return String(node);
  return undefined;
}

function jwtPayload(jwt: string): Record<string, unknown> | undefined {
  const parts = jwt.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return payload !== null && typeof payload === 'object' ? (payload as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
