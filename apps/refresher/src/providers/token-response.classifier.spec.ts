import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { leaksSecret } from './token-response.classifier.js';

const BODY = 60_000;
const noise = (length: number) => randomBytes(length).toString('base64').replace(/[+/=]/g, 'x').slice(0, length);
const jwtLike = randomBytes(1_200).toString('base64url');

describe('leaksSecret on a 60 KB provider body', () => {
  afterEach(() => vi.restoreAllMocks());

  it('finds a whole secret, or a 12-character piece of it, anywhere in the body', () => {
    const secrets = [jwtLike, 'short-secret'];
    const body = noise(BODY);
    expect(leaksSecret(body, secrets)).toBe(false);
    for (const at of [0, BODY / 2, BODY - 12]) {
      const piece = jwtLike.slice(700, 712);
      expect(leaksSecret(body.slice(0, at) + piece + body.slice(at + 12), secrets), `piece at ${at}`).toBe(true);
    }
    expect(leaksSecret(body.slice(0, 30_000) + jwtLike + body.slice(30_000), secrets)).toBe(true);
    expect(leaksSecret(body.slice(0, 30_000) + 'short-secret' + body.slice(30_000), secrets)).toBe(true);
    // 11 characters of a long secret are not a leak (ordinary words would match), as before.
    expect(leaksSecret(body.slice(0, 30_000) + jwtLike.slice(700, 711) + '!' + body.slice(30_000), secrets)).toBe(false);
    expect(leaksSecret(body, ['', jwtLike])).toBe(false);
  });

  it('scans the body a bounded number of times, whatever the length of the secret', () => {
    // The old search ran one full `includes` over the body per 12-character window of the
    // secret (1 189 scans for this secret): O(|secret|·|body|) on text the provider controls.
    const scans = { count: 0 };
    const body = noise(BODY);
    for (const method of ['includes', 'indexOf', 'search', 'match'] as const) {
      const original = String.prototype[method] as (...args: unknown[]) => unknown;
      vi.spyOn(String.prototype, method).mockImplementation(function (this: string, ...args: unknown[]) {
        if (this.length >= BODY) scans.count++;
        return original.apply(this, args);
      });
    }
    expect(leaksSecret(body, [jwtLike, noise(4_000), 'short-secret'])).toBe(false);
    // At most one whole-body search per short secret; the long ones cost a single pass.
    expect(scans.count).toBeLessThanOrEqual(1);
  });
});
