import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Secret } from './secret.js';

describe('Secret', () => {
  const secret = new Secret('s3cr3t-value');

  it('redacts every accidental way of printing it', () => {
    expect(String(secret)).toBe('[redacted]');
    expect(`${secret}`).toBe('[redacted]');
    expect(JSON.stringify({ secret })).toBe('{"secret":"[redacted]"}');
    expect(inspect({ nested: { secret } })).not.toContain('s3cr3t');
    expect(Object.keys(secret)).toEqual([]);
  });

  it('gives the value only when revealed', () => {
    expect(secret.reveal()).toBe('s3cr3t-value');
    expect(secret.equals(new Secret('s3cr3t-value'))).toBe(true);
    expect(secret.equals(new Secret('other'))).toBe(false);
  });

  it('treats empty values as absent', () => {
    expect(Secret.of('')).toBeUndefined();
    expect(Secret.of(null)).toBeUndefined();
    expect(Secret.of('x')?.reveal()).toBe('x');
  });
});
