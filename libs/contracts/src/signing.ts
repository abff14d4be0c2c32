import {
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { createUser, Prefix } from '@nats-io/nkeys';
// nkeys keeps its codec (base32 + CRC16 + role prefix) off the package's main entry;
// it is the one NATS tooling uses, so keys written by `nk`/`nsc` read the same here.
import { Codec } from '@nats-io/nkeys/lib/codec.js';

/**
 * Ed25519 signatures of token replies and events, keys in NATS user nkey form: `SU…`
 * seeds, `U…` public keys. nkeys only encodes and decodes them; signing and verifying use
 * Node's native Ed25519, several times faster than nkeys' pure-JS tweetnacl
 * (bench/signing.bench.ts).
 *
 * Scheme 2 (the only one): the signature covers the UTF-8 text
 * `tokenkeeper/2` LF `<subject>` LF `<signed-at>` LF followed by the exact payload bytes,
 * where `<subject>` is the event's own subject (for a `token.get` reply: the request's
 * subject) and `<signed-at>` the `Tokenkeeper-Signed-At` header, decimal epoch ms. So a
 * signature says which credential and which kind of message it is, and when it was made:
 * the same bytes on another subject, or long after, do not verify. docs/security.md,
 * "Signature scheme 2", gives it byte for byte; signature-vectors.json has test vectors.
 */

export const SIGNATURE_HEADER = 'Tokenkeeper-Signature';
export const SIGNER_HEADER = 'Tokenkeeper-Signer';
export const SIGNED_AT_HEADER = 'Tokenkeeper-Signed-At';
/** The first line of the signed bytes. */
export const SIGNATURE_SCHEME = 'tokenkeeper/2';
/** What every scheme-2 signature header starts with; anything else (an unprefixed scheme-1 signature, `v1.`) is refused. */
export const SIGNATURE_PREFIX = 'v2.';
/** How long after signing a message is still accepted, unless configured otherwise. */
export const DEFAULT_SIGNATURE_MAX_AGE_SECONDS = 900;
/** How far ahead of the reader's clock a signing time may be (clock skew between hosts). */
export const SIGNATURE_MAX_FUTURE_MS = 60_000;

/**
 * `unsupported_scheme`: a signature header without the `v2.` prefix (an older refresher).
 * `too_old` / `too_new`: signed outside the accepted window. A signature over other bytes,
 * another subject or another signing time is `bad_signature`: Ed25519 cannot tell them apart.
 */
export type SignatureVerdict =
  'ok' | 'unsigned' | 'untrusted' | 'bad_signature' | 'unsupported_scheme' | 'too_old' | 'too_new';

/** The three headers a signed message carries. */
export type SignatureHeaders = {
  [SIGNATURE_HEADER]: string;
  [SIGNER_HEADER]: string;
  [SIGNED_AT_HEADER]: string;
};

/** A key that is not what it should be. The message never contains the key itself. */
export class SigningKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SigningKeyError';
  }
}

// DER prefixes of an Ed25519 PKCS#8 private key and SPKI public key (RFC 8410): the
// raw 32 bytes follow them.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const RAW_KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;
/** `v2.` and 64 bytes in unpadded base64url. */
const SIGNATURE_PATTERN = /^v2\.[A-Za-z0-9_-]{86}$/;
/** Canonical decimal epoch ms: no sign, no leading zero, no exponent, so one time has one spelling. */
const SIGNED_AT_PATTERN = /^(0|[1-9][0-9]{0,15})$/;
const encoder = new TextEncoder();

const ROLE_NAMES: Partial<Record<number, string>> = {
  [Prefix.Operator]: 'an operator',
  [Prefix.Account]: 'an account',
  [Prefix.Server]: 'a server',
  [Prefix.Cluster]: 'a cluster',
  [Prefix.Curve]: 'a curve (xkey)',
};

export function privateKeyFromRawSeed(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** The raw 32-byte Ed25519 seed of a `SU…` nkey seed; anything else is refused without echoing it. */
export function decodeUserSeed(seed: string): Uint8Array {
  let decoded: { prefix: Prefix; buf: Uint8Array };
  try {
    decoded = Codec.decodeSeed(encoder.encode(seed.trim()));
  } catch {
    throw new SigningKeyError('signing key is not a valid NATS nkey seed (expected SU…)');
  }
  if (decoded.prefix !== Prefix.User) {
    throw new SigningKeyError(
      `signing key is ${ROLE_NAMES[decoded.prefix] ?? 'a non-user'} nkey seed, not a user seed (expected SU…)`,
    );
  }
  if (decoded.buf.length !== RAW_KEY_BYTES)
    throw new SigningKeyError('signing key is not a valid NATS nkey seed (expected SU…)');
  return decoded.buf;
}

/** The raw 32-byte Ed25519 public key of a `U…` user nkey, or null when it is not one. */
export function decodeUserPublicKey(publicKey: string): Uint8Array | null {
  try {
    const raw = Codec.decode(Prefix.User, encoder.encode(publicKey.trim()));
    return raw.length === RAW_KEY_BYTES ? raw : null;
  } catch {
    return null;
  }
}

export function isUserPublicKey(value: string): boolean {
  return decodeUserPublicKey(value) !== null;
}

/** A fresh `SU…` seed, for local runs that were given none. */
export function generateSigningSeed(): string {
  return new TextDecoder().decode(createUser().getSeed());
}

/**
 * The bytes a scheme-2 signature covers: `tokenkeeper/2` LF subject LF signed-at LF payload.
 * One allocation and two copies; the subject and the signing time are ASCII by the
 * subject rules and the header form, written as UTF-8 all the same.
 */
export function signedBytes(subject: string, signedAt: string, payload: Uint8Array): Buffer {
  const head = `${SIGNATURE_SCHEME}\n${subject}\n${signedAt}\n`;
  const headLength = Buffer.byteLength(head, 'utf8');
  const bytes = Buffer.allocUnsafe(headLength + payload.byteLength);
  bytes.write(head, 0, 'utf8');
  bytes.set(payload, headLength);
  return bytes;
}

/** Signs messages with one user nkey; the key is parsed once. */
export class EventSigner {
  private constructor(
    private readonly key: KeyObject,
    /** The signer's `U…` public key, for the `Tokenkeeper-Signer` header and EVENT_TRUSTED_SIGNERS. */
    readonly publicKey: string,
  ) {}

  static fromSeed(seed: string): EventSigner {
    const raw = decodeUserSeed(seed);
    const key = privateKeyFromRawSeed(raw);
    const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
    const publicKey = new TextDecoder().decode(Codec.encode(Prefix.User, spki.subarray(SPKI_ED25519_PREFIX.length)));
    return new EventSigner(key, publicKey);
  }

  /**
   * The `Tokenkeeper-Signature` value (`v2.` + unpadded base64url) for this payload on this
   * subject, signed at `signedAtMs`. Ed25519 signs the message itself: no digest.
   */
  sign(subject: string, payload: Uint8Array, signedAtMs: number): string {
    return (
      SIGNATURE_PREFIX +
      cryptoSign(null, signedBytes(subject, signedAtText(signedAtMs), payload), this.key).toString('base64url')
    );
  }

  /** The three headers, as they go on the message. */
  headersFor(subject: string, payload: Uint8Array, signedAtMs: number): SignatureHeaders {
    return {
      [SIGNATURE_HEADER]: this.sign(subject, payload, signedAtMs),
      [SIGNER_HEADER]: this.publicKey,
      [SIGNED_AT_HEADER]: signedAtText(signedAtMs),
    };
  }
}

function signedAtText(signedAtMs: number): string {
  if (!Number.isSafeInteger(signedAtMs) || signedAtMs < 0)
    throw new RangeError('signing time must be a whole number of epoch milliseconds');
  return String(signedAtMs);
}

/** What a message's headers look like to the verifier (nats.js `MsgHdrs` fits: `get` answers '' when absent). */
export interface HeaderReader {
  get(name: string): string;
}

export interface SignatureVerifierOptions {
  /** How long after signing a message is accepted. Default DEFAULT_SIGNATURE_MAX_AGE_SECONDS. */
  maxAgeSeconds?: number;
}

/**
 * Checks signatures against a fixed set of trusted signers (a refresher's own key plus
 * EVENT_TRUSTED_SIGNERS, several during a rotation). Each trusted key is parsed into a
 * KeyObject once, here. A verify is a map lookup, a few string checks, one buffer of
 * signed bytes and one native Ed25519 check; everything that can be refused without the
 * Ed25519 check (no headers, an unknown signer, another scheme, a signing time outside the
 * window) is refused before it.
 */
export class SignatureVerifier {
  private readonly keys = new Map<string, KeyObject>();
  readonly maxAgeMs: number;

  constructor(trustedPublicKeys: Iterable<string>, options: SignatureVerifierOptions = {}) {
    const maxAgeSeconds = options.maxAgeSeconds ?? DEFAULT_SIGNATURE_MAX_AGE_SECONDS;
    if (!Number.isInteger(maxAgeSeconds) || maxAgeSeconds < 1)
      throw new RangeError('signature max age must be a positive whole number of seconds');
    this.maxAgeMs = maxAgeSeconds * 1000;
    let index = 0;
    for (const entry of trustedPublicKeys) {
      const publicKey = entry.trim();
      const raw = decodeUserPublicKey(publicKey);
      // The position, not the value, so a mistakenly pasted seed is not echoed.
      if (raw === null)
        throw new SigningKeyError(`trusted signer #${index + 1} is not a NATS user public key (expected U…)`);
      this.keys.set(publicKey, publicKeyFromRaw(raw));
      index++;
    }
  }

  get trusted(): readonly string[] {
    return [...this.keys.keys()];
  }

  get size(): number {
    return this.keys.size;
  }

  /**
   * The verdict on `payload` arriving on (or answering a request on) `subject` with these
   * headers, at `nowMs` on the reader's clock.
   */
  verify(subject: string, payload: Uint8Array, headers: HeaderReader | undefined, nowMs: number): SignatureVerdict {
    if (headers === undefined) return 'unsigned';
    const signature = headers.get(SIGNATURE_HEADER);
    const signer = headers.get(SIGNER_HEADER);
    if (!signature || !signer) return 'unsigned';
    const key = this.keys.get(signer);
    if (key === undefined) return 'untrusted';
    if (!signature.startsWith(SIGNATURE_PREFIX)) return 'unsupported_scheme';
    const signedAt = headers.get(SIGNED_AT_HEADER);
    if (!SIGNED_AT_PATTERN.test(signedAt)) return 'bad_signature';
    const signedAtMs = Number(signedAt);
    if (nowMs - signedAtMs > this.maxAgeMs) return 'too_old';
    if (signedAtMs - nowMs > SIGNATURE_MAX_FUTURE_MS) return 'too_new';
    // Buffer's base64url decoder skips characters it does not know: check the form first.
    if (!SIGNATURE_PATTERN.test(signature)) return 'bad_signature';
    const raw = Buffer.from(signature.slice(SIGNATURE_PREFIX.length), 'base64url');
    if (raw.length !== SIGNATURE_BYTES) return 'bad_signature';
    return cryptoVerify(null, signedBytes(subject, signedAt, payload), key, raw) ? 'ok' : 'bad_signature';
  }
}
