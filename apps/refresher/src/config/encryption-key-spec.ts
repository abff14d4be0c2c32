/** The TOKEN_ENCRYPTION_KEYS format; the cipher using the keys is crypto/token-cipher.ts. */
const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;

export class EncryptionKeyError extends Error {
  override name = 'EncryptionKeyError';
}

export interface EncryptionKey {
  id: string;
  key: Buffer;
}

/** Parses `kid:base64key,kid2:base64key`; the first key encrypts, all of them decrypt. */
export function parseKeySpec(spec: string): EncryptionKey[] {
  const keys = spec
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part, index) => {
      const colon = part.indexOf(':');
      if (colon <= 0) throw new EncryptionKeyError(`TOKEN_ENCRYPTION_KEYS: entry ${index + 1} must be kid:base64key`);
      const id = part.slice(0, colon);
      if (!KEY_ID_PATTERN.test(id)) {
        throw new EncryptionKeyError(
          `TOKEN_ENCRYPTION_KEYS: key id of entry ${index + 1} must match ${KEY_ID_PATTERN}`,
        );
      }
      const key = Buffer.from(part.slice(colon + 1), 'base64');
      if (key.length !== 32) {
        throw new EncryptionKeyError(
          `TOKEN_ENCRYPTION_KEYS: key "${id}" must be 32 bytes of base64 (got ${key.length})`,
        );
      }
      return { id, key };
    });
  if (keys.length === 0) throw new EncryptionKeyError('TOKEN_ENCRYPTION_KEYS: no key given');
  if (new Set(keys.map((k) => k.id)).size !== keys.length) {
    throw new EncryptionKeyError('TOKEN_ENCRYPTION_KEYS: key ids must be unique');
  }
  return keys;
}
