import { randomBytes } from 'node:crypto';
import { Secret } from '@tokenkeeper/common';
import { describe, expect, it } from 'vitest';
import { EncryptionKeyError, parseKeySpec, tokenAad, TokenCipher } from './token-cipher.js';

const key = () => randomBytes(32).toString('base64');

describe('TokenCipher', () => {
  const aad = tokenAad('acme', 'github', 'access');

  it('round-trips and never stores the plaintext', () => {
    const cipher = new TokenCipher(parseKeySpec(`k1:${key()}`));
    const blob = cipher.encrypt(new Secret('gho_plaintext_value'), aad);
    expect(blob.toString('latin1')).not.toContain('gho_plaintext_value');
    expect(cipher.decrypt(blob, aad).reveal()).toBe('gho_plaintext_value');
    expect(cipher.keyIdOf(blob)).toBe('k1');
  });

  it('binds the ciphertext to its credential and field', () => {
    const cipher = new TokenCipher(parseKeySpec(`k1:${key()}`));
    const blob = cipher.encrypt(new Secret('token'), aad);
    expect(() => cipher.decrypt(blob, tokenAad('acme', 'google', 'access'))).toThrow();
    expect(() => cipher.decrypt(blob, tokenAad('acme', 'github', 'refresh'))).toThrow();
  });

  it('reads rows sealed under an older key after rotation', () => {
    const oldKey = `old:${key()}`;
    const before = new TokenCipher(parseKeySpec(oldKey));
    const blob = before.encrypt(new Secret('token'), aad);
    const after = new TokenCipher(parseKeySpec(`new:${key()},${oldKey}`));
    expect(after.primaryKeyId).toBe('new');
    expect(after.decrypt(blob, aad).reveal()).toBe('token');
    expect(after.keyIdOf(after.encrypt(new Secret('token'), aad))).toBe('new');
  });

  it('detects tampering', () => {
    const cipher = new TokenCipher(parseKeySpec(`k1:${key()}`));
    const blob = cipher.encrypt(new Secret('token'), aad);
    blob[blob.length - 1] ^= 1;
    expect(() => cipher.decrypt(blob, aad)).toThrow();
  });

  it('refuses a blob whose GCM tag was cut short (a 4-byte tag would be forgeable in 2^32 tries)', () => {
    const cipher = new TokenCipher(parseKeySpec(`k1:${key()}`));
    // An empty secret: the blob ends with the tag, so cutting the blob cuts the tag.
    const blob = cipher.encrypt(new Secret(''), aad);
    const tagEnd = 2 + 'k1'.length + 12 + 16;
    expect(blob.length).toBe(tagEnd);
    expect(cipher.decrypt(blob, aad).reveal()).toBe('');
    for (const length of [tagEnd - 12, tagEnd - 1, 2 + 'k1'.length + 12, 3, 1]) {
      expect(() => cipher.decrypt(blob.subarray(0, length), aad), `length ${length}`).toThrow(EncryptionKeyError);
    }
  });

  it('gives a 16-byte check value per key id that tells keys apart and is not the key', () => {
    const a = key();
    const values = (spec: string) =>
      new Map(new TokenCipher(parseKeySpec(spec)).keyCheckValues().map((c) => [c.keyId, c.checkValue]));
    const first = values(`k1:${a},k2:${key()}`);
    expect(first.get('k1')).toHaveLength(16);
    expect(values(`k1:${a}`).get('k1')!.equals(first.get('k1')!)).toBe(true);
    expect(values(`k1:${key()}`).get('k1')!.equals(first.get('k1')!)).toBe(false);
    // The same key under another id has another check value: ids sharing a key are not revealed.
    expect(values(`k9:${a}`).get('k9')!.equals(first.get('k1')!)).toBe(false);
    expect(Buffer.from(a, 'base64').includes(first.get('k1')!)).toBe(false);
  });

  it('rejects bad key specs with messages that name the problem but not the key', () => {
    expect(() => parseKeySpec('nokid')).toThrow(EncryptionKeyError);
    expect(() => parseKeySpec('k1:c2hvcnQ=')).toThrow(/32 bytes/);
    const k = key();
    expect(() => parseKeySpec(`a:${k},a:${k}`)).toThrow(/unique/);
    try {
      parseKeySpec('k1:c2hvcnQ=');
    } catch (error) {
      expect(String(error)).not.toContain('c2hvcnQ=');
    }
  });
});
