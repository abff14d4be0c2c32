import { describe, expect, it } from 'vitest';
import { parseProvidersDocument } from './providers-file.loader.js';

const load = (entry: Record<string, unknown>) =>
  parseProvidersDocument(
    JSON.stringify({ providers: { p: { clientId: 'c', clientSecret: 's', ...entry } } }),
    'json',
    {},
  );

function problems(entry: Record<string, unknown>): string {
  try {
    load(entry);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('accepted');
}

describe('providers file: URL placeholders and tokenFields', () => {
  it('keeps placeholders in the URLs for per-connection filling, and the named tokenFields', () => {
    const p = load({
      tokenUrl: 'https://{shop}.myshopify.com/admin/oauth/access_token',
      tokenFields: ['instance_url', 'team.id', 'id_token.tid'],
    }).get('p')!;
    expect(p.tokenUrl).toBe('https://{shop}.myshopify.com/admin/oauth/access_token');
    expect(p.tokenFields).toEqual(['instance_url', 'team.id', 'id_token.tid']);
  });

  it.each([
    ['https://x{shop}.example.com/token', 'whole host label'],
    ['https://example.com/p{a}/token', 'whole path segment'],
    ['https://example.com:{port}/token', 'port'],
    ['https://example.com/token?x={a}', 'query'],
  ])('refuses a placeholder out of place: %s', (tokenUrl, said) => {
    expect(problems({ tokenUrl })).toContain(said);
  });

  it('refuses secrets as tokenFields, naming the entry', () => {
    const message = problems({ tokenUrl: 'https://example.com/token', tokenFields: ['refresh_token'] });
    expect(message).toContain('tokenFields[0]');
  });

  it('the presets name their fields and per-shop URLs', () => {
    const sf = load({ preset: 'salesforce' }).get('p')!;
    expect(sf.tokenFields).toContain('instance_url');
    const shop = load({ preset: 'shopify' }).get('p')!;
    expect(shop.tokenUrl).toBe('https://{shop}.myshopify.com/admin/oauth/access_token');
    expect(load({ preset: 'intuit' }).get('p')!.refreshTokenExpiresInField).toBe('x_refresh_token_expires_in');
  });

  it('an entry names its refresh-token lifetime field (over the preset), a top-level name only', () => {
    const entry = { tokenUrl: 'https://example.com/token', refreshTokenExpiresInField: 'x_refresh_token_expires_in' };
    expect(load(entry).get('p')!.refreshTokenExpiresInField).toBe('x_refresh_token_expires_in');
    expect(load({ preset: 'intuit', refreshTokenExpiresInField: 'rt_ttl' }).get('p')!.refreshTokenExpiresInField).toBe(
      'rt_ttl',
    );
    expect(load({ tokenUrl: 'https://example.com/token' }).get('p')!.refreshTokenExpiresInField).toBeUndefined();
    expect(problems({ ...entry, refreshTokenExpiresInField: 'a.b' })).toContain('refreshTokenExpiresInField');
  });
});
