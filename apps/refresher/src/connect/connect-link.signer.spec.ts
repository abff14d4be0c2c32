import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TokenCipher } from '../crypto/token-cipher.js';
import { bindingCookieName, ConnectLinkSigner, parseCookies, randomNonce } from './connect-link.signer.js';

const key = (id: string) => ({ id, key: randomBytes(32) });

describe('ConnectLinkSigner', () => {
  const [a, b] = [key('a'), key('b')];
  const signer = new ConnectLinkSigner(new TokenCipher([a]));

  it('accepts what it minted, for its purpose only, and nothing altered', () => {
    const id = signer.mint('session');
    expect(id).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(signer.verify('session', id)).toBe(true);
    expect(signer.verify('state', id)).toBe(false);
    const flipped = `${id.slice(0, 10)}${id[10] === 'A' ? 'B' : 'A'}${id.slice(11)}`;
    expect(signer.verify('session', flipped)).toBe(false);
    for (const junk of [undefined, 7, '', 'x'.repeat(64), randomBytes(32).toString('base64url'), `${id}=`])
      expect(signer.verify('session', junk)).toBe(false);
  });

  it('every replica with the same keys agrees; a rotation keeps open links valid; other keys do not', () => {
    const id = signer.mint('state');
    expect(new ConnectLinkSigner(new TokenCipher([a])).verify('state', id)).toBe(true);
    expect(new ConnectLinkSigner(new TokenCipher([b, a])).verify('state', id)).toBe(true);
    expect(new ConnectLinkSigner(new TokenCipher([b])).verify('state', id)).toBe(false);
  });

  it('binds the form token to the session and to the form cookie', () => {
    const [session, other] = [signer.mint('session'), signer.mint('session')];
    const nonce = randomNonce();
    const token = signer.formToken(session, nonce);
    expect(signer.checkFormToken(session, nonce, token)).toBe(true);
    expect(signer.checkFormToken(other, nonce, token)).toBe(false);
    expect(signer.checkFormToken(session, randomNonce(), token)).toBe(false);
    expect(signer.checkFormToken(session, undefined, token)).toBe(false);
    expect(signer.checkFormToken(session, nonce, undefined)).toBe(false);
    expect(signer.checkFormToken(session, nonce, `${token}x`)).toBe(false);
  });

  it('names one binding cookie per state, and reads cookie headers leniently', () => {
    expect(bindingCookieName('s1')).toMatch(/^__Host-tokenkeeper-connect-[A-Za-z0-9_-]{12}$/);
    expect(bindingCookieName('s1')).not.toBe(bindingCookieName('s2'));
    expect([...parseCookies('a=1; b = 2;junk; a=3; =x')]).toEqual([
      ['a', '1'],
      ['b', '2'],
    ]);
    expect(parseCookies(undefined).size).toBe(0);
  });
});
