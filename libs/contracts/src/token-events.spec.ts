import { describe, expect, it } from 'vitest';
import { MAX_EXTRA_VALUE_LENGTH, MAX_EXTRAS, validateTokenView } from './token-events.js';

const token = {
  tenant: 'acme',
  connection: 'crm',
  provider: 'sf',
  accessToken: 'at',
  tokenType: 'Bearer',
  expiresAt: null,
  version: 3,
};

describe('validateTokenView: extras', () => {
  it('keeps a token’s extras, frozen, and nothing else beyond the contract', () => {
    const valid = validateTokenView({
      ...token,
      extras: { instance_url: 'https://acme.my.salesforce.com' },
      eventId: 'x',
    });
    expect(valid?.view).toEqual({ ...token, extras: { instance_url: 'https://acme.my.salesforce.com' } });
    expect(Object.isFrozen(valid?.view.extras)).toBe(true);
    expect(validateTokenView(token)?.view).not.toHaveProperty('extras');
  });

  it('drops a token whose extras break the bounds', () => {
    const many = Object.fromEntries(Array.from({ length: MAX_EXTRAS + 1 }, (_, i) => [`k${i}`, 'v']));
    for (const extras of [many, { a: 'x'.repeat(MAX_EXTRA_VALUE_LENGTH + 1) }, { a: 1 }, ['a'], null, 'x', { '': 'v' }])
      expect(validateTokenView({ ...token, extras })).toBeNull();
  });
});
