import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  createTestDatabase,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { TokenClient } from '@tokenkeeper/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Db } from '../../audit/test/audit.harness.js';
import { REPO_ROOT, spawnRefresher, type ChildRefresher } from './ops-support.js';
import { RawCaller } from './refresher.harness.js';

/** A key as an operator makes one: `tokenctl keygen encryption-key --kid <kid>`. */
function keygen(kid: string): string {
  return execFileSync(
    process.execPath,
    [join(REPO_ROOT, 'bin/tokenctl.js'), 'keygen', 'encryption-key', '--kid', kid],
    {
      encoding: 'utf8',
    },
  ).trim();
}

/** A signing key as an operator makes one: `tokenctl keygen signing-key` (seed, then public key). */
function signingPair(): { seed: string; publicKey: string } {
  const [seed, publicKey] = execFileSync(
    process.execPath,
    [join(REPO_ROOT, 'bin/tokenctl.js'), 'keygen', 'signing-key'],
    {
      encoding: 'utf8',
    },
  ).split('\n');
  return { seed, publicKey };
}

/**
 * The encryption key rotation of docs/operations.md, with the refresher started as
 * `npm run start:refresher` starts it, on a real PostgreSQL and NATS: add the new key first,
 * let re-encryption move every row to it, then remove the old key and restart.
 */
describe('rotating the encryption key and the signing key', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let db: Db;
  const running: ChildRefresher[] = [];

  beforeAll(async () => {
    [nats, database] = await Promise.all([startNatsServer({ jetstream: true }), createTestDatabase('tk_keyrotation')]);
    db = new Db(database.url);
  });

  afterAll(async () => {
    for (const child of running) child.kill();
    await db?.close();
    await nats?.stop();
    await database?.drop();
  });

  async function start(keys: string, signing: Record<string, string> = {}): Promise<ChildRefresher> {
    const child = await spawnRefresher({
      NODE_ENV: 'test',
      NATS_URL: nats.url,
      DATABASE_URL: database.url,
      TOKEN_ENCRYPTION_KEYS: keys,
      LOG_LEVEL: 'info',
      SHUTDOWN_GRACE_MS: '2000',
      ...signing,
    });
    running.push(child);
    await waitFor(() => child.output().includes('"refresher started"'), {
      timeoutMs: 60_000,
      intervalMs: 50,
      message: 'the refresher to start',
    });
    return child;
  }

  async function stop(child: ChildRefresher): Promise<void> {
    child.child.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  }

  const keyIds = async () =>
    (await db.rows<{ key_id: string }>('SELECT DISTINCT key_id FROM credentials ORDER BY key_id')).map((r) => r.key_id);

  it(
    'add the new key first, re-encryption moves every row, remove the old: the refresher still serves',
    { timeout: 240_000 },
    async () => {
      const [oldKey, newKey] = [keygen('k1'), keygen('k2')];
      const connections = ['c1', 'c2', 'c3'];

      const first = await start(oldKey);
      const caller = await RawCaller.connect(nats.url);
      try {
        for (const connection of connections) {
          const reply = await caller.admin('register', {
            tenant: 'rot',
            connection,
            provider: 'sandbox',
            accessToken: `at_${connection}_before_rotation`,
            expiresIn: 3600,
          });
          expect(reply.ok, JSON.stringify(reply.error)).toBe(true);
        }
        await stop(first);
        expect(await keyIds()).toEqual(['k1']);

        // Step 1: the new key first in the list (it encrypts), the old one still there (it decrypts).
        const both = await start(`${newKey},${oldKey}`);
        await waitFor(async () => (await keyIds()).join() === 'k2', {
          timeoutMs: 90_000,
          intervalMs: 500,
          message: 'every row re-encrypted under k2',
        });
        expect(both.output()).toContain('re-encrypted credentials under the current key');
        await stop(both);

        // Step 2: the old key removed; a restart serves every token.
        const after = await start(newKey);
        for (const connection of connections) {
          const got = await caller.get({ tenant: 'rot', connection });
          expect(got.ok, JSON.stringify(got.error)).toBe(true);
          expect(got.token.accessToken).toBe(`at_${connection}_before_rotation`);
        }
        for (const key of [oldKey, newKey]) expect(after.output()).not.toContain(key.split(':')[1]);
        await stop(after);
      } finally {
        await caller.close();
      }
    },
  );

  it(
    'signing key: the new public key trusted everywhere before the switch; a client trusting both keeps accepting, one trusting only the old refuses',
    { timeout: 240_000 },
    async () => {
      const [oldKey, newKey] = [signingPair(), signingPair()];
      const key = { tenant: 'sig', connection: 'c1' };
      const encryption = keygen('k9');
      const caller = await RawCaller.connect(nats.url);
      const register = async (accessToken: string) => {
        const reply = await caller.admin('register', { ...key, provider: 'sandbox', accessToken, expiresIn: 3600 });
        expect(reply.ok, JSON.stringify(reply.error)).toBe(true);
      };
      // Step 1: every replica (and every client below) trusts the new public key first.
      const before = await start(encryption, {
        EVENT_SIGNING_KEY: oldKey.seed,
        EVENT_TRUSTED_SIGNERS: newKey.publicKey,
      });
      const both = new TokenClient({
        servers: nats.url,
        trustedSigners: [oldKey.publicKey, newKey.publicKey],
        tenants: ['sig'],
      });
      const oldOnly = new TokenClient({ servers: nats.url, trustedSigners: [oldKey.publicKey], tenants: ['sig'] });
      try {
        await Promise.all([both.start(), oldOnly.start()]);
        await register('at_signed_by_old');
        expect(await both.getAccessToken(key)).toBe('at_signed_by_old');
        expect(await oldOnly.getAccessToken(key)).toBe('at_signed_by_old');
        await stop(before);

        // Step 2: the switch. Events are signed by the new key from now on.
        const after = await start(encryption, {
          EVENT_SIGNING_KEY: newKey.seed,
          EVENT_TRUSTED_SIGNERS: oldKey.publicKey,
        });
        await register('at_signed_by_new');
        await waitFor(() => both.peekAccessToken(key) === 'at_signed_by_new', {
          timeoutMs: 30_000,
          message: 'the client trusting both keys applies the event signed by the new one',
        });
        await waitFor(() => (oldOnly.stats.rejectedByReason.untrusted ?? 0) > 0, {
          timeoutMs: 30_000,
          message: 'the client trusting only the old key refuses it',
        });
        expect(oldOnly.peekAccessToken(key)).toBe('at_signed_by_old');
        for (const secret of [oldKey.seed, newKey.seed]) expect(after.output()).not.toContain(secret);
        await stop(after);
      } finally {
        await Promise.all([both.close(), oldOnly.close(), caller.close()]);
      }
    },
  );
});
