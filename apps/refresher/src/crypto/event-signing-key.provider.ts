import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EventSigner, generateSigningSeed, SignatureVerifier, SigningKeyError } from '@tokenkeeper/contracts';
import type { AppConfig } from '../config/app-config.js';

/**
 * The key token replies and events are signed with. EVENT_SIGNING_KEY when set
 * (loadConfig has checked it, and refuses production without it). A test run without one
 * gets a key that lives in memory only, so no test writes into the working tree; a local
 * run makes one once in a git-ignored file, like the development encryption key, so that
 * several local replicas share it, and the log says where it is.
 */
export function createEventSigner(config: AppConfig, log: (message: string) => void): EventSigner {
  if (config.signing.seed) return EventSigner.fromSeed(config.signing.seed.reveal());
  if (config.env === 'production')
    throw new SigningKeyError('EVENT_SIGNING_KEY is required in production (a NATS user nkey seed, SU…)');
  if (config.env === 'test') return EventSigner.fromSeed(generateSigningSeed());
  const file = resolve(config.signing.devKeyFile);
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${generateSigningSeed()}\n`, { mode: 0o600 });
    log(`created a local event signing key in ${file}; set EVENT_SIGNING_KEY in production`);
  } else {
    log(`using the local event signing key in ${file}`);
  }
  try {
    return EventSigner.fromSeed(readFileSync(file, 'utf8').trim());
  } catch (error) {
    if (error instanceof SigningKeyError) throw new SigningKeyError(`EVENT_SIGNING_KEY_FILE ${file}: ${error.message}`);
    throw error;
  }
}

/** Whose events and replies this replica accepts: its own key and EVENT_TRUSTED_SIGNERS. */
export function createSignatureVerifier(config: AppConfig, signer: EventSigner): SignatureVerifier {
  return new SignatureVerifier([signer.publicKey, ...config.signing.trustedSigners], {
    maxAgeSeconds: config.signing.maxAgeSeconds,
  });
}
