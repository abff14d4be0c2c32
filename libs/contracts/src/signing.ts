import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { createUser, Prefix } from '@nats-io/nkeys';
// nkeys keeps its codec (base32 + CRC16 + role prefix) off the package's main entry;
// it is the one NATS tooling uses, so keys written by `nk`/`nsc` read the same here.
import { Codec } from '@nats-io/nkeys/lib/codec.js';

/**
 * Ed25519 signatures of token replies and events (SPEC §3), keys in NATS user nkey
 * form: `SU…` seeds, `U…` public keys. nkeys only encodes and decodes them; signing and
 * verifying use Node's native Ed25519, several times faster than nkeys' pure-JS
 * tweetnacl (bench/signing.bench.ts).
 */

export const SIGNATURE_HEADER = 'Tokenkeeper-Signature';
export const SIGNER_HEADER = 'Tokenkeeper-Signer';

export type SignatureVerdict = 'ok' | 'unsigned' | 'untrusted' | 'bad_signature';

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
/** 64 bytes in unpadded base64url. */
const SIGNATURE_PATTERN = /^[A-Za-z0-9_-]{86}$/;
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
    throw new SigningKeyError(`signing key is ${ROLE_NAMES[decoded.prefix] ?? 'a non-user'} nkey seed, not a user seed (expected SU…)`);
  }
  if (decoded.buf.length !== RAW_KEY_BYTES) throw new SigningKeyError('signing key is not a valid NATS nkey seed (expected SU…)');
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

/** Signs payload bytes with one user nkey; the key is parsed once. */
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

  /** The base64url signature of exactly these bytes (Ed25519 signs the message itself: no digest). */
  sign(bytes: Uint8Array): string {
    return cryptoSign(null, bytes, this.key).toString('base64url');
  }

  /** Both headers, as they go on the message. */
  headersFor(bytes: Uint8Array): { [SIGNATURE_HEADER]: string; [SIGNER_HEADER]: string } {
    return { [SIGNATURE_HEADER]: this.sign(bytes), [SIGNER_HEADER]: this.publicKey };
  }
}

/** What a message's headers look like to the verifier (nats.js `MsgHdrs` fits: `get` answers '' when absent). */
export interface HeaderReader {
  get(name: string): string;
}

/**
 * Checks signatures against a fixed set of trusted signers (a refresher's own key plus
 * EVENT_TRUSTED_SIGNERS, several during a rotation). Each trusted key is parsed into a
 * KeyObject once, here; a verify is a map lookup and one native Ed25519 check.
 */
export class SignatureVerifier {
  private readonly keys = new Map<string, KeyObject>();

  constructor(trustedPublicKeys: Iterable<string>) {
    let index = 0;
    for (const entry of trustedPublicKeys) {
      const publicKey = entry.trim();
      const raw = decodeUserPublicKey(publicKey);
      // The position, not the value, so a mistakenly pasted seed is not echoed.
      if (raw === null) throw new SigningKeyError(`trusted signer #${index + 1} is not a NATS user public key (expected U…)`);
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

  verify(bytes: Uint8Array, signature: string | null | undefined, signer: string | null | undefined): SignatureVerdict {
    if (!signature || !signer) return 'unsigned';
    const key = this.keys.get(signer);
    if (key === undefined) return 'untrusted';
    // Buffer's base64url decoder skips characters it does not know: check the form first.
    if (!SIGNATURE_PATTERN.test(signature)) return 'bad_signature';
    const raw = Buffer.from(signature, 'base64url');
    if (raw.length !== SIGNATURE_BYTES) return 'bad_signature';
    return cryptoVerify(null, bytes, key, raw) ? 'ok' : 'bad_signature';
  }

  verifyHeaders(bytes: Uint8Array, headers: HeaderReader | undefined): SignatureVerdict {
    if (headers === undefined) return 'unsigned';
    return this.verify(bytes, headers.get(SIGNATURE_HEADER), headers.get(SIGNER_HEADER));
  }
}
