import { describe, expect, it } from 'vitest';
import { ContractError } from '@tokenkeeper/contracts';
import type { ProviderConfig } from './provider.types.js';
import { assertConnectionConfig, bindProvider, placeholdersOfUrl } from './url-placeholders.policy.js';

const shop = {
  id: 'shop',
  tokenUrl: 'https://{shop}.myshopify.com/admin/oauth/access_token',
  authorizationUrl: 'https://{shop}.myshopify.com/admin/oauth/authorize',
} as ProviderConfig;
const pathTenant = { id: 'idp', tokenUrl: 'https://idp.example.com/t/{tenant}/token' } as ProviderConfig;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ContractError);
    expect((error as ContractError).code).toBe('bad_request');
    return (error as Error).message;
  }
  throw new Error('not refused');
}

describe('URL placeholders', () => {
  it('fills a host label and a path segment', () => {
    expect(bindProvider(shop, { shop: 'acme-store' }).tokenUrl).toBe(
      'https://acme-store.myshopify.com/admin/oauth/access_token',
    );
    expect(bindProvider(shop, { shop: 'acme-store' }).authorizationUrl).toBe(
      'https://acme-store.myshopify.com/admin/oauth/authorize',
    );
    expect(bindProvider(pathTenant, { tenant: 'Org_1' }).tokenUrl).toBe('https://idp.example.com/t/Org_1/token');
  });

  it.each(['evil.com/', 'evil.com', '..', 'a@b', 'a:1', 'a/b', 'a?b', 'a#b', 'a b', ' a', 'a%2F', '-a', ''])(
    'refuses the host value %j without quoting it',
    (value) => {
      const message = refusal(() => assertConnectionConfig(shop, { shop: value }));
      if (value.startsWith('evil')) expect(message).not.toContain(value);
    },
  );

  it.each(['..', '.', 'a/b', 'a.b', 'a?b', 'a#b', 'a@b', 'a:b', 'a b'])('refuses the path value %j', (value) => {
    refusal(() => assertConnectionConfig(pathTenant, { tenant: value }));
  });

  it('refuses a missing value and an unknown key, and binding never fills unchecked values', () => {
    expect(refusal(() => assertConnectionConfig(shop, undefined))).toContain('connectionConfig.shop: required');
    expect(refusal(() => assertConnectionConfig(shop, { shop: 'a', other: 'b' }))).toContain('no {other}');
    refusal(() => bindProvider(shop, { shop: 'evil.com/' }));
  });

  it('accepts placeholders only as whole host labels or path segments', () => {
    expect(placeholdersOfUrl('https://{a}.example.com/{b}/x')).toEqual({
      places: new Map([
        ['a', 'host'],
        ['b', 'path'],
      ]),
    });
    for (const url of [
      'https://x{a}.example.com/',
      'https://{a}/',
      'https://example.com:{port}/',
      'https://example.com/p{a}/',
      'https://example.com/p?x={a}',
    ]) {
      if (url === 'https://{a}/') continue; // a whole host of one label is a label: allowed
      expect(placeholdersOfUrl(url)).toHaveProperty('problem');
    }
  });
});
