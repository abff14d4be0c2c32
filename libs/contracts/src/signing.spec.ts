import { createAccount, createOperator, createUser, fromPublic, fromSeed } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import {
  EventSigner,
  generateSigningSeed,
  SIGNATURE_HEADER,
  SignatureVerifier,
  SIGNER_HEADER,
  SigningKeyError,
} from './signing.js';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const payload = new TextEncoder().encode('{"tenant":"acme","connection":"github","accessToken":"at-1","version":7}');

function headers(values: Record<string, string>) {
  return { get: (name: string) => values[name] ?? '' };
}

describe('EventSigner / SignatureVerifier (SPEC §3)', () => {
  const seed = generateSigningSeed();
  const signer = EventSigner.fromSeed(seed);
  const verifier = new SignatureVerifier([signer.publicKey]);

  it('makes user seeds and derives the U… public key nkeys derives', () => {
    expect(seed).toMatch(/^SU[A-Z2-7]{56}$/);
    expect(signer.publicKey).toMatch(/^U[A-Z2-7]{55}$/);
    expect(signer.publicKey).toBe(fromSeed(new TextEncoder().encode(seed)).getPublicKey());
    expect(generateSigningSeed()).not.toBe(seed);
  });

  it('verifies what it signed, over the exact bytes', () => {
    const signature = signer.sign(payload);
    expect(signature).toMatch(/^[A-Za-z0-9_-]{86}$/);
    expect(verifier.verify(payload, signature, signer.publicKey)).toBe('ok');
    expect(verifier.verifyHeaders(payload, headers(signer.headersFor(payload)))).toBe('ok');
  });

  it('refuses a tampered payload, a signature of other bytes, and a flipped signature bit', () => {
    const signature = signer.sign(payload);
    const tampered = Uint8Array.from(payload);
    tampered[tampered.length - 2] ^= 1; // version 7 → 6
    expect(verifier.verify(tampered, signature, signer.publicKey)).toBe('bad_signature');
    // The same JSON with a space added is other bytes: the signature covers bytes, not meaning.
    const reformatted = new TextEncoder().encode(`${text(payload)} `);
    expect(verifier.verify(reformatted, signature, signer.publicKey)).toBe('bad_signature');
    const raw = Buffer.from(signature, 'base64url');
    raw[10] ^= 0x40;
    expect(verifier.verify(payload, raw.toString('base64url'), signer.publicKey)).toBe('bad_signature');
  });

  it('reports a valid signature by a key it does not trust as untrusted', () => {
    const other = EventSigner.fromSeed(generateSigningSeed());
    expect(verifier.verify(payload, other.sign(payload), other.publicKey)).toBe('untrusted');
    // Someone else's signature claimed to be ours is simply a bad signature.
    expect(verifier.verify(payload, other.sign(payload), signer.publicKey)).toBe('bad_signature');
  });

  it('treats missing and garbage headers as unsigned or bad, never as ok and never by throwing', () => {
    const signature = signer.sign(payload);
    expect(verifier.verify(payload, undefined, signer.publicKey)).toBe('unsigned');
    expect(verifier.verify(payload, signature, undefined)).toBe('unsigned');
    expect(verifier.verify(payload, '', '')).toBe('unsigned');
    expect(verifier.verifyHeaders(payload, undefined)).toBe('unsigned');
    expect(verifier.verifyHeaders(payload, headers({}))).toBe('unsigned');
    expect(verifier.verifyHeaders(payload, headers({ [SIGNATURE_HEADER]: signature }))).toBe('unsigned');
    expect(verifier.verify(payload, signature, 'not-a-key')).toBe('untrusted');
    for (const garbage of ['!!!', 'a'.repeat(86), signature.slice(0, 85), `${signature}A`, `${signature.slice(0, 84)}*${signature.slice(85)}`, Buffer.from(signature, 'base64url').toString('base64')]) {
      expect(verifier.verify(payload, garbage, signer.publicKey), garbage).toBe('bad_signature');
    }
    expect(verifier.verifyHeaders(payload, headers({ [SIGNATURE_HEADER]: 'x', [SIGNER_HEADER]: signer.publicKey }))).toBe('bad_signature');
  });

  it('rejects seeds that are not user seeds, without printing the seed', () => {
    for (const [role, kp] of [['account', createAccount()], ['operator', createOperator()]] as const) {
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
    expect(() => new SignatureVerifier([signer.publicKey, account])).toThrow(/trusted signer #2 is not a NATS user public key/);
    expect(() => new SignatureVerifier([seed])).toThrow(SigningKeyError);
    try {
      new SignatureVerifier([seed]);
    } catch (e) {
      expect((e as Error).message).not.toContain(seed.slice(2, 12));
    }
  });

  it('interoperates with nkeys: its signatures verify natively, native ones verify in nkeys', () => {
    const kp = fromSeed(new TextEncoder().encode(seed));
    const byNkeys = Buffer.from(kp.sign(payload)).toString('base64url');
    expect(verifier.verify(payload, byNkeys, kp.getPublicKey())).toBe('ok');
    const native = Buffer.from(signer.sign(payload), 'base64url');
    expect(fromPublic(signer.publicKey).verify(payload, native)).toBe(true);
    const tampered = Uint8Array.from(payload);
    tampered[0] ^= 1;
    expect(fromPublic(signer.publicKey).verify(tampered, native)).toBe(false);
  });

  it('accepts several trusted keys at once, for rotation', () => {
    const next = EventSigner.fromSeed(generateSigningSeed());
    const both = new SignatureVerifier([signer.publicKey, ` ${next.publicKey} `]);
    expect(both.size).toBe(2);
    expect(both.verify(payload, signer.sign(payload), signer.publicKey)).toBe('ok');
    expect(both.verify(payload, next.sign(payload), next.publicKey)).toBe('ok');
  });
});
