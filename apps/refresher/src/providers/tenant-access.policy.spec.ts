import { ContractError } from '@tokenkeeper/contracts';
import { describe, expect, it } from 'vitest';
import { parseProvidersDocument, ProvidersFileError } from './providers-file.loader.js';
import {
  assertTenantAllowed,
  matchesTenantPattern,
  tenantPatternProblem,
  tenantRefusal,
} from './tenant-access.policy.js';

describe('matchesTenantPattern', () => {
  it('a name matches itself only, case included', () => {
    expect(matchesTenantPattern('acme', 'acme')).toBe(true);
    expect(matchesTenantPattern('acme', 'acme2')).toBe(false);
    expect(matchesTenantPattern('acme', 'xacme')).toBe(false);
    expect(matchesTenantPattern('acme', 'ACME')).toBe(false);
  });

  it('* stands for any run of characters, none included', () => {
    expect(matchesTenantPattern('*', 'anything')).toBe(true);
    expect(matchesTenantPattern('acme-*', 'acme-billing')).toBe(true);
    expect(matchesTenantPattern('acme-*', 'acme-')).toBe(true);
    expect(matchesTenantPattern('acme-*', 'acme')).toBe(false);
    expect(matchesTenantPattern('acme-*', 'evil-acme-x')).toBe(false);
    expect(matchesTenantPattern('*-prod', 'acme-prod')).toBe(true);
    expect(matchesTenantPattern('*-prod', 'acme-prod2')).toBe(false);
    expect(matchesTenantPattern('a*b*c', 'abc')).toBe(true);
    expect(matchesTenantPattern('a*b*c', 'axxbyyc')).toBe(true);
    expect(matchesTenantPattern('a*b*c', 'acb')).toBe(false);
    // The middle part may not overlap the suffix: "ab" + "b" needs two b's.
    expect(matchesTenantPattern('a*b*b', 'ab')).toBe(false);
    expect(matchesTenantPattern('a*bb', 'ab')).toBe(false);
  });

  it('is not a regular expression: dots and the like are not special', () => {
    expect(tenantPatternProblem('acme.*')).toBeDefined();
    expect(tenantPatternProblem('^acme$')).toBeDefined();
    expect(tenantPatternProblem('')).toBeDefined();
    expect(tenantPatternProblem('acme-*')).toBeUndefined();
    expect(tenantPatternProblem('*')).toBeUndefined();
  });
});

describe('tenantRefusal', () => {
  const cc = { id: 'internal-idp', grant: 'client_credentials' as const };
  const rt = { id: 'github', grant: 'refresh_token' as const };

  it('a refresh_token provider without tenants is open to every tenant', () => {
    expect(tenantRefusal(rt, 'anyone')).toBeUndefined();
  });

  it('a client_credentials provider without tenants is open to none, and the message says why and names the setting', () => {
    const refusal = tenantRefusal(cc, 'evil');
    expect(refusal).toMatch(/client_credentials/);
    expect(refusal).toMatch(/`tenants` of provider "internal-idp"/);
    expect(() => assertTenantAllowed(cc, 'evil')).toThrow(ContractError);
    try {
      assertTenantAllowed(cc, 'evil');
    } catch (error) {
      expect((error as ContractError).code).toBe('forbidden');
    }
  });

  it('with tenants, exactly the listed names and patterns are allowed, whatever the grant', () => {
    const billing = { ...cc, tenants: ['billing', 'acme-*'] };
    expect(tenantRefusal(billing, 'billing')).toBeUndefined();
    expect(tenantRefusal(billing, 'acme-eu')).toBeUndefined();
    const refusal = tenantRefusal(billing, 'evil');
    expect(refusal).toMatch(/`tenants` of provider "internal-idp"/);
    // Who else may use it is none of the caller's business.
    expect(refusal).not.toContain('billing');
    expect(tenantRefusal({ ...rt, tenants: [] }, 'acme')).toBeDefined();
    expect(tenantRefusal({ ...rt, tenants: ['*'] }, 'acme')).toBeUndefined();
  });
});

describe('tenants in the providers file', () => {
  const yaml = (text: string) => parseProvidersDocument(text, 'yaml', {}, 'providers file /x.yaml');
  const idp = (tenants: string) => `
providers:
  internal-idp:
    tokenUrl: https://idp.example.com/oauth/token
    clientId: billing-service
    clientSecret: s
    grant: client_credentials
${tenants}`;

  it('is read as given; absent stays absent', () => {
    expect(yaml(idp('    tenants: [billing, "acme-*"]')).get('internal-idp')!.tenants).toEqual(['billing', 'acme-*']);
    expect(yaml(idp('    tenants: ["*"]')).get('internal-idp')!.tenants).toEqual(['*']);
    expect(yaml(idp('')).get('internal-idp')!.tenants).toBeUndefined();
  });

  it('a bad pattern stops loading, naming provider and field but not the value', () => {
    let error: unknown;
    try {
      yaml(idp('    tenants: [billing, "acme.s3cr3t"]'));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ProvidersFileError);
    expect((error as Error).message).toMatch(
      /provider "internal-idp": tenants\[1\]: must be a tenant name or a pattern/,
    );
    expect((error as Error).message).not.toContain('s3cr3t');
    expect(() => yaml(idp('    tenants: billing'))).toThrow(/provider "internal-idp": tenants: must be a list/);
  });
});
