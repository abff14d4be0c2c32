import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventSigner } from '@tokenkeeper/contracts';
import { afterAll, describe, expect, it } from 'vitest';
import { parseKeySpec } from '../../refresher/src/config/encryption-key-spec.js';

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
    '--version is the repository version, and from the image build (npm run build) the one of /app/package.json',
    () => {
      const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
      expect(tokenctl(['--version']).trim()).toBe(version);
      // The image: what the Dockerfile's `npm run build` writes to dist/, package.json beside it, no sources.
      execFileSync(
        process.execPath,
        ['--import', '@swc-node/register/esm-register', 'tools/build.ts', '--out-dir', join(imageDir, 'dist')],
        { cwd: ROOT, stdio: 'pipe' },
      );
      writeFileSync(
        join(imageDir, 'package.json'),
        JSON.stringify({ name: 'tokenkeeper', version: '9.8.7', type: 'module' }),
      );
      const built = join(imageDir, 'dist/apps/tokenctl/src/main.js');
      expect(execFileSync(process.execPath, [built, '--version'], { cwd: '/', encoding: 'utf8' }).trim()).toBe('9.8.7');
      // A NATS command loads the narrow library entries (@tokenkeeper/nats/connect): they resolve in that build too.
      const list = spawnSync(process.execPath, [built, 'list', '--nats-url', 'nats://127.0.0.1:1', '--timeout', '2s'], {
        cwd: '/',
        encoding: 'utf8',
      });
      expect(list.stderr).toMatch(/^tokenctl: .*127\.0\.0\.1:1/);
      expect(list.status).toBe(3);
    },
    TIMEOUT_MS,
  );
});
