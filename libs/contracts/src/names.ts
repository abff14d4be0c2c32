/**
 * Tenant and connection names become NATS subject tokens, so they are restricted to
 * characters that can never be a wildcard (`*`, `>`), a separator (`.`) or whitespace.
 */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** The name rule as people read it, for error messages: `… must match ${NAME_RULE}`. */
export const NAME_RULE = NAME_PATTERN.source;

/** The message of every refusal of a tenant or connection name. */
export const NAME_RULE_MESSAGE = `tenant and connection must match ${NAME_RULE}`;

export function isValidName(value: unknown): value is string {
  return typeof value === 'string' && NAME_PATTERN.test(value);
}

/** A credential's identity. */
export interface CredentialKey {
  tenant: string;
  connection: string;
}

/** Map key for a credential; `/` cannot occur in a valid name, so keys never collide. */
export function credentialId(key: CredentialKey): string {
  return `${key.tenant}/${key.connection}`;
}
