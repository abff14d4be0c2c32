import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { generateSigningSeed } from '@tokenkeeper/contracts';
import { describe, expect, it } from 'vitest';

// The e2e half of event-signing-key.provider.spec.ts: it starts the refresher's main.ts in a child process.
describe('EVENT_SIGNING_KEY at start-up', () => {
  it('main.ts exits before connecting anywhere when production has no EVENT_SIGNING_KEY', async () => {
    const seed = generateSigningSeed();
    const run = promisify(execFile)(
      process.execPath,
      ['--import', '@swc-node/register/esm-register', 'apps/refresher/src/main.ts'],
      {
        cwd: resolve(import.meta.dirname, '../../../..'),
        env: {
          PATH: process.env.PATH ?? '',
          NODE_ENV: 'production',
          EVENT_TRUSTED_SIGNERS: seed,
          NATS_URL: 'nats://127.0.0.1:1',
        },
        timeout: 60_000,
      },
    );
    const failure = await run.then(
      () => null,
      (error: { code?: number; stderr?: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain('EVENT_SIGNING_KEY: required in production');
    expect(failure?.stderr).toContain('EVENT_TRUSTED_SIGNERS: entry #1 is not');
    expect(failure?.stderr).not.toContain(seed);
  }, 60_000);
});
