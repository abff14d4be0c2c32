import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { Secret } from '@tokenkeeper/common';

const FORMAT_VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/**
 * IVs are drawn from the CSPRNG this many at a time, as Node draws randomUUID's bytes: one
 * native call per batch instead of one per encryption (1.5 % of the refresher's
 * profile went to randomBytes(12) per token). Each IV is still random and used once; an IV is
 * not secret (it is stored in the blob), so holding the next ones in memory exposes nothing.
 */
const IVS_PER_DRAW = 256;
const KEY_CHECK_BYTES = 16;

// The key list's format is configuration (checked with every other setting at start).
export { EncryptionKeyError, type EncryptionKey, parseKeySpec } from '../config/encryption-key-spec.js';
import { EncryptionKeyError, type EncryptionKey } from '../config/encryption-key-spec.js';

/**
 * AES-256-GCM for tokens at rest. The blob names the key that sealed it, so rows
 * written under an older key stay readable after rotation; the associated data binds
 * a ciphertext to one credential and one field, so a blob copied to another row (or
 * from the refresh-token column to the access-token column) fails to decrypt.
 *
 * Layout: version(1) | kidLength(1) | kid | iv(12) | tag(16) | ciphertext.
 */
export class TokenCipher {
  private readonly byId: Map<string, Buffer>;
  readonly primaryKeyId: string;
  private ivs = Buffer.alloc(0);
  private ivOffset = 0;

  constructor(keys: EncryptionKey[]) {
    if (keys.length === 0) throw new EncryptionKeyError('at least one encryption key is required');
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
    this.primaryKeyId = keys[0].id;
  }

  encrypt(secret: Secret, associatedData: string): Buffer {
    const key = this.byId.get(this.primaryKeyId)!;
    const iv = this.nextIv();
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const body = Buffer.concat([cipher.update(secret.reveal(), 'utf8'), cipher.final()]);
    const kid = Buffer.from(this.primaryKeyId, 'utf8');
    return Buffer.concat([Buffer.from([FORMAT_VERSION, kid.length]), kid, iv, cipher.getAuthTag(), body]);
  }

  /** A fresh IV, never handed out twice: a view into the drawn batch (encrypt copies it into the blob). */
  private nextIv(): Buffer {
    if (this.ivOffset + IV_BYTES > this.ivs.length) {
      this.ivs = randomBytes(IV_BYTES * IVS_PER_DRAW);
      this.ivOffset = 0;
    }
    const iv = this.ivs.subarray(this.ivOffset, this.ivOffset + IV_BYTES);
    this.ivOffset += IV_BYTES;
    return iv;
  }

  decrypt(blob: Buffer, associatedData: string): Secret {
    if (blob.length < 2 || blob[0] !== FORMAT_VERSION) throw new EncryptionKeyError('unknown ciphertext format');
    const kidEnd = 2 + blob[1];
    // GCM accepts tags as short as 4 bytes, and a short tag can be forged by trial: a
    // blob cut inside its tag must not reach the decipher (which is also pinned to 16).
    if (blob.length < kidEnd + IV_BYTES + TAG_BYTES) throw new EncryptionKeyError('ciphertext is truncated');
    const kid = blob.subarray(2, kidEnd).toString('utf8');
    const key = this.byId.get(kid);
    if (!key) throw new EncryptionKeyError(`ciphertext sealed with unknown key "${kid}"`);
    const iv = blob.subarray(kidEnd, kidEnd + IV_BYTES);
    const tag = blob.subarray(kidEnd + IV_BYTES, kidEnd + IV_BYTES + TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(tag);
    const plain = Buffer.concat([decipher.update(blob.subarray(kidEnd + IV_BYTES + TAG_BYTES)), decipher.final()]);
    return new Secret(plain.toString('utf8'));
  }

  /**
   * A check value per key (HMAC-SHA256 under the key of a constant and the key id, cut to
   * 16 bytes), to compare with what the database recorded without storing the key. It
   * offers no shortcut to the key: finding a 256-bit HMAC key from one output costs a
   * search of the key space, as for any other known plaintext.
   */
  keyCheckValues(): { keyId: string; checkValue: Buffer }[] {
    return [...this.byId].map(([keyId, key]) => ({
      keyId,
      checkValue: createHmac('sha256', key)
        .update(`tokenkeeper key check v1\0${keyId}`)
        .digest()
        .subarray(0, KEY_CHECK_BYTES),
    }));
  }

  /**
   * Keys for another use of the same secrets, one per key, the primary first (HKDF-SHA256,
   * `info` naming the use): every replica derives the same ones, and a key derived for one
   * use tells nothing about the key it came from or the ones for other uses.
   */
  derivedKeys(info: string): Buffer[] {
    const ordered = [this.primaryKeyId, ...[...this.byId.keys()].filter((id) => id !== this.primaryKeyId)];
    return ordered.map((id) => Buffer.from(hkdfSync('sha256', this.byId.get(id)!, Buffer.alloc(0), info, 32)));
  }

  keyIdOf(blob: Buffer): string {
    return blob.subarray(2, 2 + blob[1]).toString('utf8');
  }
}

/** Associated data for one secret field of one credential. */
export function tokenAad(tenant: string, connection: string, field: 'access' | 'refresh'): string {
  return `tokenkeeper:v1:${tenant}/${connection}:${field}`;
}
