import { randomBytes } from 'node:crypto';
import { Secret } from '@tokenkeeper/common';
import { describe, expect, it } from 'vitest';
import { parseKeySpec, tokenAad, TokenCipher } from './token-cipher.js';

describe('TokenCipher: IVs drawn in batches are still never reused', () => {
  it('gives every encryption its own IV, across several draws, and every blob opens', () => {
    const cipher = new TokenCipher(parseKeySpec(`k1:${randomBytes(32).toString('base64')}`));
    const aad = tokenAad('acme', 'github', 'access');
    const ivs = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      const blob = cipher.encrypt(new Secret(`at_${i}`), aad);
      // Layout: version(1) | kidLength(1) | kid | iv(12) | tag(16) | ciphertext.
      const ivStart = 2 + blob[1];
      ivs.add(blob.subarray(ivStart, ivStart + 12).toString('hex'));
      expect(cipher.decrypt(blob, aad).reveal()).toBe(`at_${i}`);
    }
    expect(ivs.size).toBe(1_000);
  });
});
