import { createAccount, createOperator, createUser, fromPublic, fromSeed } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import {
  EventSigner,
  generateSigningSeed,
  SIGNATURE_HEADER,
  SignatureVerifier,
  SIGNED_AT_HEADER,
  signedBytes,
  SIGNER_HEADER,
  SigningKeyError,
} from './signing.js';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const payload = new TextEncoder().encode('{"tenant":"acme","connection":"github","accessToken":"at-1","version":7}');

function headers(values: Record<string, string>) {
  return { get: (name: string) => values[name] ?? '' };
}

const SUBJECT = 'token.refreshed.acme.github';
const NOW = 1_796_601_600_000;

describe('EventSigner / SignatureVerifier', () => {
  const seed = generateSigningSeed();
  const signer = EventSigner.fromSeed(seed);
  const verifier = new SignatureVerifier([signer.publicKey]);
  const signed = (bytes: Uint8Array, by: EventSigner = signer) => headers({ ...by.headersFor(SUBJECT, bytes, NOW) });
  /** Verifies `bytes` on SUBJECT at NOW with these raw header values. */
  const check = (bytes: Uint8Array, signature: string | undefined, signerKey: string | undefined, v = verifier) =>
    v.verify(
      SUBJECT,
      bytes,
      headers({
        [SIGNATURE_HEADER]: signature ?? '',
        [SIGNER_HEADER]: signerKey ?? '',
        [SIGNED_AT_HEADER]: String(NOW),
      }),
      NOW,
    );

  it('makes user seeds and derives the U… public key nkeys derives', () => {
    expect(seed).toMatch(/^SU[A-Z2-7]{56}$/);
    expect(signer.publicKey).toMatch(/^U[A-Z2-7]{55}$/);
    expect(signer.publicKey).toBe(fromSeed(new TextEncoder().encode(seed)).getPublicKey());
    expect(generateSigningSeed()).not.toBe(seed);
  });

  it('verifies what it signed, over the exact bytes, subject and signing time', () => {
    const signature = signer.sign(SUBJECT, payload, NOW);
    expect(signature).toMatch(/^v2\.[A-Za-z0-9_-]{86}$/);
    expect(check(payload, signature, signer.publicKey)).toBe('ok');
    expect(signer.headersFor(SUBJECT, payload, NOW)).toEqual({
      [SIGNATURE_HEADER]: signature,
      [SIGNER_HEADER]: signer.publicKey,
      [SIGNED_AT_HEADER]: String(NOW),
    });
    expect(verifier.verify(SUBJECT, payload, signed(payload), NOW)).toBe('ok');
  });

  it('builds the signed bytes as scheme LF subject LF signed-at LF payload', () => {
    const bytes = signedBytes('token.get.a.b', '12', new TextEncoder().encode('{}'));
    expect(bytes.toString('utf8')).toBe('tokenkeeper/2\ntoken.get.a.b\n12\n{}');
  });

  it('refuses the same bytes on another subject, another kind, or with another signing time', () => {
    const h = signed(payload);
    expect(verifier.verify('token.revoked.acme.github', payload, h, NOW)).toBe('bad_signature');
    expect(verifier.verify('token.refreshed.acme.other', payload, h, NOW)).toBe('bad_signature');
    expect(verifier.verify('token.get.acme.github', payload, h, NOW)).toBe('bad_signature');
    const moved = headers({ ...signer.headersFor(SUBJECT, payload, NOW), [SIGNED_AT_HEADER]: String(NOW + 1) });
    expect(verifier.verify(SUBJECT, payload, moved, NOW)).toBe('bad_signature');
    for (const odd of ['', '-1', '01', '1e12', ' 1', '1.0', '9'.repeat(17)]) {
      const h2 = headers({ ...signer.headersFor(SUBJECT, payload, NOW), [SIGNED_AT_HEADER]: odd });
      expect(verifier.verify(SUBJECT, payload, h2, NOW), odd).toBe('bad_signature');
    }
  });

  it('accepts a signing time up to the max age ago and 60 s ahead, and nothing outside', () => {
    const h = signed(payload);
    expect(verifier.verify(SUBJECT, payload, h, NOW + 900_000)).toBe('ok');
    expect(verifier.verify(SUBJECT, payload, h, NOW + 900_001)).toBe('too_old');
    expect(verifier.verify(SUBJECT, payload, h, NOW - 60_000)).toBe('ok');
    expect(verifier.verify(SUBJECT, payload, h, NOW - 60_001)).toBe('too_new');
    const strict = new SignatureVerifier([signer.publicKey], { maxAgeSeconds: 30 });
    expect(strict.verify(SUBJECT, payload, h, NOW + 30_001)).toBe('too_old');
    expect(() => new SignatureVerifier([signer.publicKey], { maxAgeSeconds: 0 })).toThrow(RangeError);
  });

  it('refuses a scheme-1 signature (no prefix) and any other prefix', () => {
    const bare = signer.sign(SUBJECT, payload, NOW).slice(3);
    expect(check(payload, bare, signer.publicKey)).toBe('unsupported_scheme');
    expect(check(payload, `v1.${bare}`, signer.publicKey)).toBe('unsupported_scheme');
    expect(check(payload, `v3.${bare}`, signer.publicKey)).toBe('unsupported_scheme');
  });

  it('refuses a tampered payload, a signature of other bytes, and a flipped signature bit', () => {
    const signature = signer.sign(SUBJECT, payload, NOW);
    const tampered = Uint8Array.from(payload);
    tampered[tampered.length - 2] ^= 1; // version 7 → 6
    expect(check(tampered, signature, signer.publicKey)).toBe('bad_signature');
    // The same JSON with a space added is other bytes: the signature covers bytes, not meaning.
    const reformatted = new TextEncoder().encode(`${text(payload)} `);
    expect(check(reformatted, signature, signer.publicKey)).toBe('bad_signature');
    const raw = Buffer.from(signature.slice(3), 'base64url');
    raw[10] ^= 0x40;
    expect(check(payload, `v2.${raw.toString('base64url')}`, signer.publicKey)).toBe('bad_signature');
  });

  it('reports a valid signature by a key it does not trust as untrusted', () => {
    const other = EventSigner.fromSeed(generateSigningSeed());
    expect(check(payload, other.sign(SUBJECT, payload, NOW), other.publicKey)).toBe('untrusted');
    // Someone else's signature claimed to be ours is simply a bad signature.
    expect(check(payload, other.sign(SUBJECT, payload, NOW), signer.publicKey)).toBe('bad_signature');
  });

  it('treats missing and garbage headers as unsigned or bad, never as ok and never by throwing', () => {
    const signature = signer.sign(SUBJECT, payload, NOW);
    expect(check(payload, undefined, signer.publicKey)).toBe('unsigned');
    expect(check(payload, signature, undefined)).toBe('unsigned');
    expect(check(payload, '', '')).toBe('unsigned');
    expect(verifier.verify(SUBJECT, payload, undefined, NOW)).toBe('unsigned');
    expect(verifier.verify(SUBJECT, payload, headers({}), NOW)).toBe('unsigned');
    expect(verifier.verify(SUBJECT, payload, headers({ [SIGNATURE_HEADER]: signature }), NOW)).toBe('unsigned');
    expect(check(payload, signature, 'not-a-key')).toBe('untrusted');
    const body = signature.slice(3);
    for (const garbage of [
      'v2.!!!',
      `v2.${'a'.repeat(86)}`,
      signature.slice(0, 88),
      `${signature}A`,
      `v2.${body.slice(0, 84)}*${body.slice(85)}`,
      `v2.${Buffer.from(body, 'base64url').toString('base64')}`,
    ]) {
      expect(check(payload, garbage, signer.publicKey), garbage).toBe('bad_signature');
    }
    const noTime = headers({ [SIGNATURE_HEADER]: signature, [SIGNER_HEADER]: signer.publicKey });
    expect(verifier.verify(SUBJECT, payload, noTime, NOW)).toBe('bad_signature');
  });

  it('rejects seeds that are not user seeds, without printing the seed', () => {
    for (const [role, kp] of [
      ['account', createAccount()],
      ['operator', createOperator()],
    ] as const) {
      const other = text(kp.getSeed());
      expect(other.slice(0, 2)).toBe(role === 'account' ? 'SA' : 'SO');
      let error: unknown;
      try {
        EventSigner.fromSeed(other);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(SigningKeyError);
      expect((error as Error).message).toContain(`${role} nkey seed, not a user seed`);
      expect((error as Error).message).not.toContain(other.slice(2, 12));
    }
    const corrupted = `${seed.slice(0, 20)}${seed[20] === 'A' ? 'B' : 'A'}${seed.slice(21)}`;
    for (const bad of [corrupted, 'SUxyz', '', createUser().getPublicKey()]) {
      let message = '';
      try {
        EventSigner.fromSeed(bad);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toMatch(/not a valid NATS nkey seed/);
      if (bad.length > 12) expect(message).not.toContain(bad.slice(2, 12));
    }
  });

  it('rejects trusted signers that are not user public keys, naming the position only', () => {
    const account = createAccount().getPublicKey();
    expect(() => new SignatureVerifier([signer.publicKey, account])).toThrow(
      /trusted signer #2 is not a NATS user public key/,
    );
    expect(() => new SignatureVerifier([seed])).toThrow(SigningKeyError);
    try {
      new SignatureVerifier([seed]);
    } catch (e) {
      expect((e as Error).message).not.toContain(seed.slice(2, 12));
    }
  });

  it('interoperates with nkeys: its signatures verify natively, native ones verify in nkeys', () => {
    const kp = fromSeed(new TextEncoder().encode(seed));
    const bytes = signedBytes(SUBJECT, String(NOW), payload);
    const byNkeys = `v2.${Buffer.from(kp.sign(bytes)).toString('base64url')}`;
    expect(check(payload, byNkeys, kp.getPublicKey())).toBe('ok');
    const native = Buffer.from(signer.sign(SUBJECT, payload, NOW).slice(3), 'base64url');
    expect(fromPublic(signer.publicKey).verify(bytes, native)).toBe(true);
    const tampered = Uint8Array.from(bytes);
    tampered[0] ^= 1;
    expect(fromPublic(signer.publicKey).verify(tampered, native)).toBe(false);
  });

  it('accepts several trusted keys at once, for rotation', () => {
    const next = EventSigner.fromSeed(generateSigningSeed());
    const both = new SignatureVerifier([signer.publicKey, ` ${next.publicKey} `]);
    expect(both.size).toBe(2);
    expect(check(payload, signer.sign(SUBJECT, payload, NOW), signer.publicKey, both)).toBe('ok');
    expect(check(payload, next.sign(SUBJECT, payload, NOW), next.publicKey, both)).toBe('ok');
  });
});
