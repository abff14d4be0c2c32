import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventSigner } from '@tokenkeeper/contracts';
import { afterAll, describe, expect, it } from 'vitest';
import { parseKeySpec } from '../../refresher/src/config/encryption-key-spec.js';
import { compile } from '../../../tools/compile.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const LAUNCHER = join(ROOT, 'bin/tokenctl.js');
const TIMEOUT_MS = 120_000;

/** `tokenctl <args>` through the launcher, from another directory, as an operator runs it. */
function tokenctl(args: string[]): string {
  return execFileSync(process.execPath, [LAUNCHER, ...args], { cwd: '/', encoding: 'utf8' });
}

describe('tokenctl keygen and --version (the launcher runs compiled output)', () => {
  const imageDir = join(ROOT, '.tokenkeeper', `test-image-${process.pid}`);
  afterAll(() => rmSync(imageDir, { recursive: true, force: true }));

  it(
    'keygen encryption-key prints one kid:base64 entry of 32 random bytes that the refresher accepts',
    () => {
      const first = tokenctl(['keygen', 'encryption-key', '--kid', 'k2']);
      expect(first).toMatch(/^k2:[A-Za-z0-9+/]{43}=\n$/);
      const [key] = parseKeySpec(first.trim());
      expect(key.id).toBe('k2');
      expect(key.key.length).toBe(32);
      expect(tokenctl(['keygen', 'encryption-key', '--kid', 'k2'])).not.toBe(first);
      expect(tokenctl(['keygen', 'encryption-key'])).toMatch(/^k\d{8}:/);
    },
    TIMEOUT_MS,
  );

  it(
    'keygen signing-key prints an SU… seed and, next, its U… public key',
    () => {
      const [seed, publicKey, ...rest] = tokenctl(['keygen', 'signing-key']).split('\n');
      expect(seed).toMatch(/^SU[A-Z2-7]{56}$/);
      expect(publicKey).toBe(EventSigner.fromSeed(seed).publicKey);
      expect(rest).toEqual(['']);
      const json = JSON.parse(tokenctl(['--json', 'keygen', 'signing-key'])) as { seed: string; publicKey: string };
      expect(json.publicKey).toBe(EventSigner.fromSeed(json.seed).publicKey);
    },
    TIMEOUT_MS,
  );

  it(
    '--version is the repository version, and in the image layout the one of /app/package.json',
    async () => {
      const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
      expect(tokenctl(['--version']).trim()).toBe(version);
      // The image: the build output in dist/, package.json beside it, no sources.
      await compile(join(imageDir, 'dist'), [
        'apps/tokenctl/src',
        'libs/common/src',
        'libs/contracts/src',
        'libs/nats/src',
      ]);
      writeFileSync(join(imageDir, 'package.json'), JSON.stringify({ name: 'tokenkeeper', version: '9.8.7' }));
      const out = execFileSync(process.execPath, [join(imageDir, 'dist/apps/tokenctl/src/main.js'), '--version'], {
        cwd: '/',
        encoding: 'utf8',
      });
      expect(out.trim()).toBe('9.8.7');
    },
    TIMEOUT_MS,
  );
});
