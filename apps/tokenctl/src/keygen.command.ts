import { randomBytes } from 'node:crypto';
import { type Command, InvalidArgumentError } from 'commander';
import { EventSigner, generateSigningSeed } from '@tokenkeeper/contracts';
import { ExitCode } from './cli.errors.js';
import { createOutput, printJson } from './output.format.js';

/** The refresher's rule for a key id (it rejects any other at start). */
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

function keyId(value: string): string {
  if (!KEY_ID.test(value)) throw new InvalidArgumentError('a key id is 1 to 32 letters, digits, _ or -');
  return value;
}

/** A key id that sorts by date, so the newest key of a rotation is told at a glance. */
export function defaultKeyId(now = new Date()): string {
  return `k${now.toISOString().slice(0, 10).replaceAll('-', '')}`;
}

/** One TOKEN_ENCRYPTION_KEYS entry: `kid:base64` of 32 random bytes (AES-256). */
export function encryptionKeyEntry(kid: string): string {
  return `${keyId(kid)}:${randomBytes(32).toString('base64')}`;
}

/** An EVENT_SIGNING_KEY seed and the public key other replicas and clients trust it by. */
export function signingKeyPair(): { seed: string; publicKey: string } {
  const seed = generateSigningSeed();
  return { seed, publicKey: EventSigner.fromSeed(seed).publicKey };
}

/**
 * `tokenctl keygen`: the keys production needs, made locally (nothing is sent anywhere).
 * Output is the keys alone, one a line, so that scripts can write them into secret files.
 */
export function registerKeygenCommand(program: Command): void {
  const keygen = program
    .command('keygen')
    .description('make an encryption key or a signing key (printed to stdout, sent nowhere)');
  keygen
    .command('encryption-key')
    .description('print a TOKEN_ENCRYPTION_KEYS entry, kid:base64 of 32 random bytes')
    .option('--kid <id>', `key id (default k<yyyymmdd>, e.g. ${defaultKeyId()})`, keyId)
    .action((flags: { kid?: string }, command: Command) => {
      const out = createOutput(Boolean(command.optsWithGlobals<{ json?: boolean }>().json));
      const entry = encryptionKeyEntry(flags.kid ?? defaultKeyId());
      if (out.json) printJson(out, { kid: entry.slice(0, entry.indexOf(':')), entry });
      else out.stdout.write(`${entry}\n`);
      process.exitCode = ExitCode.ok;
    });
  keygen
    .command('signing-key')
    .description('print an EVENT_SIGNING_KEY seed (SU…) and, on the next line, its public key (U…)')
    .action((_flags: unknown, command: Command) => {
      const out = createOutput(Boolean(command.optsWithGlobals<{ json?: boolean }>().json));
      const pair = signingKeyPair();
      if (out.json) printJson(out, pair);
      else out.stdout.write(`${pair.seed}\n${pair.publicKey}\n`);
      process.exitCode = ExitCode.ok;
    });
}
