import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventSigner, generateSigningSeed, SigningKeyError } from '@tokenkeeper/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, ENV_VARIABLES, loadConfig } from '../config/app-config.js';
import { createEventSigner, createSignatureVerifier } from './event-signing-key.provider.js';

/** The message a bad environment is refused with ('' when it is accepted). */
function refusal(env: Record<string, string>): string {
  try {
    loadConfig(env);
    return '';
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
}

describe('EVENT_SIGNING_KEY, EVENT_SIGNING_KEY_FILE, EVENT_TRUSTED_SIGNERS', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-signing-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  it('are variables the refresher reads', () => {
    expect(ENV_VARIABLES).toEqual(
      expect.arrayContaining(['EVENT_SIGNING_KEY', 'EVENT_SIGNING_KEY_FILE', 'EVENT_TRUSTED_SIGNERS']),
    );
  });

  it('production refuses to start without EVENT_SIGNING_KEY, naming it', () => {
    const message = refusal({
      NODE_ENV: 'production',
      TOKEN_ENCRYPTION_KEYS: 'k1:' + Buffer.alloc(32).toString('base64'),
    });
    expect(message).toContain('EVENT_SIGNING_KEY: required in production');
    // The factory refuses too, should a config be built some other way.
    const config = { ...loadConfig({ NODE_ENV: 'test' }), env: 'production' as const };
    expect(() => createEventSigner(config, () => {})).toThrow(SigningKeyError);
  });

  it('a bad seed or trusted key is named by variable (and position), never by value', () => {
    const user = EventSigner.fromSeed(generateSigningSeed()).publicKey;
    // A public key pasted where the seed goes, a seed pasted into the trusted list, and junk.
    const pastedSeed = generateSigningSeed();
    const message = refusal({ EVENT_SIGNING_KEY: user, EVENT_TRUSTED_SIGNERS: `${user},${pastedSeed},Uhunter2` });
    expect(message).toContain('EVENT_SIGNING_KEY: must be a NATS user nkey seed');
    expect(message).toContain('EVENT_TRUSTED_SIGNERS: entry #2 is not');
    expect(message).toContain('EVENT_TRUSTED_SIGNERS: entry #3 is not');
    expect(message).not.toContain('entry #1');
    for (const value of [user, pastedSeed, 'hunter2']) expect(message).not.toContain(value);
    expect(refusal({ EVENT_SIGNING_KEY: 'SUhunter2' })).not.toContain('hunter2');
  });

  it('signs with EVENT_SIGNING_KEY and trusts its own key plus EVENT_TRUSTED_SIGNERS', () => {
    const seed = generateSigningSeed();
    const other = EventSigner.fromSeed(generateSigningSeed()).publicKey;
    const config = loadConfig({
      NODE_ENV: 'production',
      TOKEN_ENCRYPTION_KEYS: 'k1:' + Buffer.alloc(32).toString('base64'),
      EVENT_SIGNING_KEY: ` ${seed} `,
      EVENT_TRUSTED_SIGNERS: ` ${other} , `,
    });
    expect(String(config.signing.seed)).not.toContain(seed);
    const signer = createEventSigner(config, () => {});
    expect(signer.publicKey).toBe(EventSigner.fromSeed(seed).publicKey);
    expect(createSignatureVerifier(config, signer).trusted).toEqual([signer.publicKey, other]);
  });

  it('a test run without a key signs with one in memory and writes no file', () => {
    const file = join(tempDir(), 'event-signing.seed');
    const logs: string[] = [];
    const config = loadConfig({ NODE_ENV: 'test', EVENT_SIGNING_KEY_FILE: file });
    const first = createEventSigner(config, (m) => logs.push(m));
    const second = createEventSigner(config, (m) => logs.push(m));
    expect(first.publicKey).not.toBe(second.publicKey);
    expect(() => statSync(file)).toThrow();
    expect(logs).toEqual([]);
  });

  it('a local run makes a key once in EVENT_SIGNING_KEY_FILE (0600), says where, and reuses it', () => {
    const file = join(tempDir(), 'nested', 'event-signing.seed');
    const logs: string[] = [];
    const config = loadConfig({ NODE_ENV: 'development', EVENT_SIGNING_KEY_FILE: file });
    const first = createEventSigner(config, (m) => logs.push(m));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(EventSigner.fromSeed(readFileSync(file, 'utf8').trim()).publicKey).toBe(first.publicKey);
    const second = createEventSigner(config, (m) => logs.push(m));
    expect(second.publicKey).toBe(first.publicKey);
    expect(logs).toEqual([
      `created a local event signing key in ${file}; set EVENT_SIGNING_KEY in production`,
      `using the local event signing key in ${file}`,
    ]);
    expect(logs.join('\n')).not.toContain(readFileSync(file, 'utf8').trim());
  });
});
