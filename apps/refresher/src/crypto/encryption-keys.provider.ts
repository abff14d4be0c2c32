import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { AppConfig } from '../config/app-config.js';
import { EncryptionKeyError, parseKeySpec, TokenCipher } from './token-cipher.js';

/**
 * Builds the cipher from TOKEN_ENCRYPTION_KEYS. In production a missing key stops
 * start-up; on a developer's machine a key is created once in a git-ignored file so
 * that `npm run start:refresher` needs no setup, and the log says where it is.
 */
export function createTokenCipher(config: AppConfig, log: (message: string) => void): TokenCipher {
  if (config.encryption.keysSpec) return new TokenCipher(parseKeySpec(config.encryption.keysSpec));
  if (config.env === 'production') {
    throw new EncryptionKeyError('TOKEN_ENCRYPTION_KEYS is required in production (kid:base64-32-byte-key,…)');
  }
  const file = resolve(config.encryption.devKeyFile);
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `dev:${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    log(`created a local development encryption key in ${file}; set TOKEN_ENCRYPTION_KEYS in production`);
  } else {
    log(`using the local development encryption key in ${file}`);
  }
  return new TokenCipher(parseKeySpec(readFileSync(file, 'utf8').trim()));
}
