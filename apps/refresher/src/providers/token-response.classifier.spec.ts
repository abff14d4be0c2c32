import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Logger } from '@nestjs/common';
import { PROVIDER_PRESETS } from './provider-presets.js';
import { classifyTokenResponse, leaksSecret, MAX_LIFETIME_SECONDS } from './token-response.classifier.js';

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
    // Fenced by a character no secret holds on both sides: a random neighbour from the noise
    // would be the secret's next (or previous) character one time in 64, a 12-character match.
    expect(leaksSecret(body.slice(0, 30_000) + '!' + jwtLike.slice(700, 711) + '!' + body.slice(30_000), secrets)).toBe(
      false,
    );
    expect(leaksSecret(body, ['', jwtLike])).toBe(false);
  });

  it('scans the body a bounded number of times, whatever the length of the secret', () => {
    // The old search ran one full `includes` over the body per 12-character window of the
    // secret (1 189 scans for this secret): O(|secret|·|body|) on text the provider controls.
    const scans = { count: 0 };
    const body = noise(BODY);
    for (const method of ['includes', 'indexOf', 'search', 'match'] as const) {
      const original = String.prototype[method] as (...args: unknown[]) => unknown;
      vi.spyOn(String.prototype as any, method).mockImplementation(function (this: string, ...args: unknown[]) {
        if (this.length >= BODY) scans.count++;
        return original.apply(this, args);
      });
    }
    expect(leaksSecret(body, [jwtLike, noise(4_000), 'short-secret'])).toBe(false);
    // At most one whole-body search per short secret; the long ones cost a single pass.
    expect(scans.count).toBeLessThanOrEqual(1);
  });
});

describe('classifyTokenResponse: error codes', () => {
  const generic = {};
  const github = { errorCodes: PROVIDER_PRESETS.github.errorCodes };
  const classify = (status: number, body: unknown, provider: Parameters<typeof classifyTokenResponse>[1] = generic) =>
    classifyTokenResponse({ status, body: JSON.stringify(body) }, provider, new Date(), ['sandbox-secret']);

  it('an unknown code (in a 200 or a 400) is transient, with the code kept, not a misconfiguration', () => {
    expect(classify(200, { error: 'bad_refresh_token' })).toMatchObject({
      ok: false,
      failure: { kind: 'retryable', code: 'bad_refresh_token' },
    });
    expect(classify(400, { error: 'something_new' })).toMatchObject({
      ok: false,
      failure: { kind: 'retryable', code: 'something_new' },
    });
    const result = classify(200, { error: 'bad_refresh_token' });
    expect(!result.ok && result.failure.message).toMatch(/^HTTP 200 bad_refresh_token/);
  });

  it('known misconfiguration codes keep the slow retry; the preset still decides its own codes', () => {
    expect(classify(401, { error: 'invalid_client' })).toMatchObject({ ok: false, failure: { kind: 'misconfigured' } });
    expect(classify(400, { error: 'unauthorized_client' })).toMatchObject({
      ok: false,
      failure: { kind: 'misconfigured' },
    });
    expect(classify(200, { error: 'bad_refresh_token' }, github)).toMatchObject({
      ok: false,
      failure: { kind: 'invalid_grant' },
    });
    expect(classify(200, { error: 'incorrect_client_credentials' }, github)).toMatchObject({
      ok: false,
      failure: { kind: 'misconfigured' },
    });
    expect(classify(400, { error: 'invalid_grant' })).toMatchObject({ ok: false, failure: { kind: 'invalid_grant' } });
  });
});

describe('classifyTokenResponse: expires_in', () => {
  afterEach(() => vi.restoreAllMocks());
  const lifetimeOf = (expiresIn: unknown) => {
    const result = classifyTokenResponse(
      { status: 200, body: JSON.stringify({ access_token: 'at_secret_value', expires_in: expiresIn }) },
      { id: 'generic-idp' } as Parameters<typeof classifyTokenResponse>[1],
      new Date(),
      ['sandbox-secret'],
    );
    if (!result.ok) throw new Error(`not a success: ${result.failure.code}`);
    return result.token.expiresInSeconds;
  };

  it('0 is a known lifetime of zero (expired now), not "no expiry"', () => {
    expect(lifetimeOf(0)).toBe(0);
    expect(lifetimeOf('0')).toBe(0);
    expect(lifetimeOf(undefined)).toBeUndefined();
  });

  it('an absurd lifetime is clamped to a year, with a warning that names the provider and no secret', () => {
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    expect(lifetimeOf(1e13)).toBe(MAX_LIFETIME_SECONDS);
    expect(lifetimeOf('10000000000000')).toBe(MAX_LIFETIME_SECONDS);
    expect(MAX_LIFETIME_SECONDS).toBe(365 * 24 * 3600);
    expect(warn).toHaveBeenCalledTimes(2);
    const logged = JSON.stringify(warn.mock.calls);
    expect(logged).toContain('generic-idp');
    expect(logged).not.toContain('at_secret_value');
    expect(lifetimeOf(MAX_LIFETIME_SECONDS)).toBe(MAX_LIFETIME_SECONDS);
    expect(lifetimeOf(3600)).toBe(3600);
    expect(warn).toHaveBeenCalledTimes(2);
    // The lifetime is now always one a Date can hold.
    expect(Number.isNaN(new Date(Date.now() + lifetimeOf(1e300)! * 1000).getTime())).toBe(false);
  });
});

describe('classifyTokenResponse: the refresh token lifetime field', () => {
  const refreshLifetime = (fields: Record<string, unknown>, refreshTokenExpiresInField?: string) => {
    const result = classifyTokenResponse(
      { status: 200, body: JSON.stringify({ access_token: 'at_secret_value', expires_in: 3600, ...fields }) },
      { id: 'p', ...(refreshTokenExpiresInField ? { refreshTokenExpiresInField } : {}) } as Parameters<
        typeof classifyTokenResponse
      >[1],
      new Date(),
      [],
    );
    if (!result.ok) throw new Error(`not a success: ${result.failure.code}`);
    return result.token.refreshTokenExpiresInSeconds;
  };

  it('reads refresh_token_expires_in by default (LinkedIn, GitHub Apps), a number or a numeric string', () => {
    expect(refreshLifetime({ refresh_token_expires_in: 31_536_000 })).toBe(31_536_000);
    expect(refreshLifetime({ refresh_token_expires_in: '5' })).toBe(5);
    expect(refreshLifetime({})).toBeUndefined();
  });

  it("reads the field a provider names (Intuit's x_refresh_token_expires_in), and only that one", () => {
    const intuit = PROVIDER_PRESETS.intuit.refreshTokenExpiresInField;
    expect(intuit).toBe('x_refresh_token_expires_in');
    expect(refreshLifetime({ x_refresh_token_expires_in: 8_726_400 }, intuit)).toBe(8_726_400);
    expect(refreshLifetime({ refresh_token_expires_in: 60 }, intuit)).toBeUndefined();
    expect(refreshLifetime({ x_refresh_token_expires_in: 8_726_400 })).toBeUndefined();
  });
});
