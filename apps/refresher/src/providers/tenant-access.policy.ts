import { ContractError } from '@tokenkeeper/contracts';
import type { ProviderConfig } from './provider.types.js';

/**
 * Which tenants may use a provider: the one rule that `register`, `connect`, every refresh
 * (scheduled, on demand, admin) and `token.get` apply, so that they cannot drift apart.
 *
 * Providers are shared by every tenant on the bus, and a tenant admin may register any
 * connection of its own tenant. For a `refresh_token` provider that is harmless (the tenant
 * brings its own grant), so such a provider without `tenants` stays open to all. A
 * `client_credentials` provider mints tokens with the operator's own client secret: open to
 * all, any tenant admin could register it and read the operator's service token. So without
 * `tenants` it is open to none.
 */

/** A tenant name in which `*` stands for any run of characters (none included). */
const TENANT_PATTERN = /^[A-Za-z0-9_*-]{1,128}$/;

/** Why a `tenants` entry cannot be used, or undefined; the message never quotes the entry. */
export function tenantPatternProblem(pattern: string): string | undefined {
  if (TENANT_PATTERN.test(pattern)) return undefined;
  return 'must be a tenant name or a pattern of name characters and * (1 to 128 of A-Z a-z 0-9 _ - *)';
}

/** Glob match without a regular expression: `*` is any run of characters, everything else literal. */
export function matchesTenantPattern(pattern: string, tenant: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === tenant;
  const first = parts[0];
  const last = parts[parts.length - 1];
  if (tenant.length < first.length + last.length || !tenant.startsWith(first) || !tenant.endsWith(last)) return false;
  const end = tenant.length - last.length;
  let at = first.length;
  for (const middle of parts.slice(1, -1)) {
    const found = tenant.indexOf(middle, at);
    if (found < 0 || found + middle.length > end) return false;
    at = found + middle.length;
  }
  return true;
}

/**
 * Why `tenant` may not use `provider`, or undefined when it may. The message names the
 * setting to change and never lists the tenants that are allowed (other tenants' names are
 * not the caller's business).
 */
export function tenantRefusal(
  provider: Pick<ProviderConfig, 'id' | 'grant' | 'tenants'>,
  tenant: string,
): string | undefined {
  const setting = `\`tenants\` of provider "${provider.id}" in the providers file`;
  if (provider.tenants === undefined) {
    if (provider.grant !== 'client_credentials') return undefined;
    return (
      `provider "${provider.id}" uses the client_credentials grant (its tokens are minted with the operator's own client secret), ` +
      `so it is open to no tenant until ${setting} names them; tenant "${tenant}" is not named`
    );
  }
  if (provider.tenants.some((pattern) => matchesTenantPattern(pattern, tenant))) return undefined;
  return `provider "${provider.id}" is not open to tenant "${tenant}" (${setting})`;
}

/** Throws `forbidden` when `tenant` may not use `provider`. */
export function assertTenantAllowed(provider: Pick<ProviderConfig, 'id' | 'grant' | 'tenants'>, tenant: string): void {
  const refusal = tenantRefusal(provider, tenant);
  if (refusal !== undefined) throw new ContractError('forbidden', refusal);
}
