import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  EventSigner,
  SIGNATURE_HEADER,
  SIGNATURE_SCHEME,
  type SignatureVerdict,
  SignatureVerifier,
  SIGNED_AT_HEADER,
  signedBytes,
  SIGNER_HEADER,
} from './signing.js';

/**
 * The published test vectors of signature scheme 2 (signature-vectors.json, shown in
 * docs/security.md) against the real signer and verifier: an implementation in another
 * language checks itself against the same file, so it must stay true.
 */

interface Vector {
  name: string;
  subject: string;
  payload: string;
  signedAt: string;
  signedBytesHex: string;
  signature: string;
}
interface MustFail {
  name: string;
  reason: SignatureVerdict;
  subject?: string;
  payload?: string;
  signedAt?: string;
  signature?: string;
  signer?: string;
  nowMs?: number;
}
const vectors = JSON.parse(readFileSync(new URL('./signature-vectors.json', import.meta.url), 'utf8')) as {
  scheme: string;
  seed: string;
  publicKey: string;
  maxAgeSeconds: number;
  valid: Vector[];
  mustFail: MustFail[];
};

const utf8 = (text: string) => new TextEncoder().encode(text);
const reader = (values: Record<string, string>) => ({ get: (name: string) => values[name] ?? '' });

describe('signature scheme 2 test vectors', () => {
  const signer = EventSigner.fromSeed(vectors.seed);
  const verifier = new SignatureVerifier([vectors.publicKey], { maxAgeSeconds: vectors.maxAgeSeconds });

  it('name this scheme and the key the seed makes', () => {
    expect(vectors.scheme).toBe(SIGNATURE_SCHEME);
    expect(signer.publicKey).toBe(vectors.publicKey);
  });

  it.each(vectors.valid.map((v) => [v.name, v] as const))(
    '%s: signed bytes and signature as published, and it verifies',
    (_name, v) => {
      const payload = utf8(v.payload);
      expect(signedBytes(v.subject, v.signedAt, payload).toString('hex')).toBe(v.signedBytesHex);
      expect(signer.sign(v.subject, payload, Number(v.signedAt))).toBe(v.signature);
      const headers = reader({
        [SIGNATURE_HEADER]: v.signature,
        [SIGNER_HEADER]: vectors.publicKey,
        [SIGNED_AT_HEADER]: v.signedAt,
      });
      expect(verifier.verify(v.subject, payload, headers, Number(v.signedAt))).toBe('ok');
    },
  );

  it.each(vectors.mustFail.map((f) => [f.name, f] as const))('must fail: %s', (_name, f) => {
    const base = vectors.valid[0]!;
    const signedAt = f.signedAt ?? base.signedAt;
    const headers = reader({
      [SIGNATURE_HEADER]: f.signature ?? base.signature,
      [SIGNER_HEADER]: f.signer ?? vectors.publicKey,
      [SIGNED_AT_HEADER]: signedAt,
    });
    const verdict = verifier.verify(
      f.subject ?? base.subject,
      utf8(f.payload ?? base.payload),
      headers,
      f.nowMs ?? Number(base.signedAt),
    );
    expect(verdict).toBe(f.reason);
  });

  it('covers the cases a reader must refuse', () => {
    const reasons = new Set(vectors.mustFail.map((f) => f.reason));
    expect([...reasons].sort()).toEqual([
      'bad_signature',
      'too_new',
      'too_old',
      'unsigned',
      'unsupported_scheme',
      'untrusted',
    ]);
    expect(vectors.mustFail.some((f) => f.subject?.startsWith('token.revoked.'))).toBe(true);
  });
});
