import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { TokenCipher } from '../crypto/token-cipher.js';

const RANDOM_BYTES = 32;
const TAG_BYTES = 16;
/** 32 random bytes and a 16-byte tag, base64url: a session id or a state. */
const LINK_TOKEN_PATTERN = /^[A-Za-z0-9_-]{64}$/;
/** 32 random bytes, base64url: the browser's binding value and its form nonce. */
const NONCE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export type LinkTokenPurpose = 'session' | 'state';

/**
 * The connect flow's bearer values. A session id and a state carry a MAC under a key derived
 * from the encryption keys, so the unauthenticated pages turn away an id nobody issued before
 * asking the database anything, on every replica alike. The form token ties the page's
 * button to both the session and a cookie of the browser that loaded it.
 */
export class ConnectLinkSigner {
  private readonly keys: Buffer[];

  constructor(cipher: TokenCipher) {
    this.keys = cipher.derivedKeys('tokenkeeper connect link v1');
  }

  mint(purpose: LinkTokenPurpose): string {
    const random = randomBytes(RANDOM_BYTES);
    return Buffer.concat([random, this.tag(this.keys[0], purpose, random)]).toString('base64url');
  }

  /** True only for a value this deployment minted for that purpose (under any of its keys, so a key rotation keeps open links usable). */
  verify(purpose: LinkTokenPurpose, value: unknown): value is string {
    if (typeof value !== 'string' || !LINK_TOKEN_PATTERN.test(value)) return false;
    const raw = Buffer.from(value, 'base64url');
    if (raw.length !== RANDOM_BYTES + TAG_BYTES) return false;
    const random = raw.subarray(0, RANDOM_BYTES);
    const tag = raw.subarray(RANDOM_BYTES);
    return this.keys.some((key) => timingSafeEqual(this.tag(key, purpose, random), tag));
  }

  /** The button's hidden field: bound to the session and to the browser's form cookie. */
  formToken(sessionId: string, formNonce: string): string {
    return this.formMac(this.keys[0], sessionId, formNonce).toString('base64url');
  }

  checkFormToken(sessionId: string, formNonce: string | undefined, token: unknown): boolean {
    if (formNonce === undefined || !isNonce(formNonce) || typeof token !== 'string' || !NONCE_PATTERN.test(token))
      return false;
    const given = Buffer.from(token, 'base64url');
    return this.keys.some((key) => timingSafeEqual(this.formMac(key, sessionId, formNonce), given));
  }

  private tag(key: Buffer, purpose: LinkTokenPurpose, random: Buffer): Buffer {
    return createHmac('sha256', key).update(`${purpose}\0`).update(random).digest().subarray(0, TAG_BYTES);
  }

  private formMac(key: Buffer, sessionId: string, formNonce: string): Buffer {
    return createHmac('sha256', key).update(`form\0${sessionId}\0${formNonce}`).digest();
  }
}

export function randomNonce(): string {
  return randomBytes(RANDOM_BYTES).toString('base64url');
}

export function isNonce(value: string): boolean {
  return NONCE_PATTERN.test(value);
}

/**
 * The binding cookie's name, one per flow (so two links opened in one browser do not undo
 * each other), derived from the state so that the callback knows which cookie to read.
 */
export function bindingCookieName(state: string): string {
  return `__Host-tokenkeeper-connect-${createHash('sha256').update(`cookie name\0${state}`).digest().subarray(0, 9).toString('base64url')}`;
}

export const FORM_COOKIE = '__Host-tokenkeeper-form';

/** `name=value` pairs of a Cookie header; a malformed pair is skipped, the first of a repeated name wins. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    const name = part.slice(0, Math.max(eq, 0)).trim();
    if (!name || cookies.has(name)) continue;
    cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

/** A `__Host-` cookie: Secure, Path=/, no Domain, HttpOnly. */
export function hostCookie(name: string, value: string, maxAgeSeconds: number, sameSite: 'Lax'): string {
  return `${name}=${value}; Max-Age=${maxAgeSeconds}; Path=/; Secure; HttpOnly; SameSite=${sameSite}`;
}
