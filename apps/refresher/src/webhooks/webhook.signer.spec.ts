import { createHmac } from 'node:crypto';
import { Secret } from '@tokenkeeper/common';
import { describe, expect, it } from 'vitest';
import { signWebhook } from './webhook.signer.js';

describe('signWebhook', () => {
  it('matches a known vector (HMAC-SHA256 of "<t>.<body>", lowercase hex)', () => {
    // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_0123456789abcdef0123456789abcdef'
    expect(signWebhook(new Secret('whsec_0123456789abcdef0123456789abcdef'), '{"a":1}', 1_700_000_000)).toBe(
      't=1700000000,v1=c1fdbee94e006c1ee2b03ad4166411f2d89824ec39aa8fa23dfdae06b759e2ed',
    );
  });

  it('is the documented recipe for any body', () => {
    const secret = 'x'.repeat(40);
    const body = JSON.stringify({ id: 'd', type: 'refreshed', message: 'é' });
    const expected = createHmac('sha256', secret).update(`42.${body}`).digest('hex');
    expect(signWebhook(new Secret(secret), body, 42)).toBe(`t=42,v1=${expected}`);
  });
});
