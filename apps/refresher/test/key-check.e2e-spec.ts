import { randomBytes } from 'node:crypto';
import {
  createTestDatabase,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { Secret } from '@tokenkeeper/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeySpec, tokenAad, TokenCipher } from '../src/crypto/token-cipher.js';
import { shardBucketOf } from '../src/persistence/credential.mapper.js';
import { Db } from '../../audit/test/audit.harness.js';
import { spawnRefresher, type ChildRefresher } from './ops-support.js';
import { RawCaller } from './refresher.harness.js';

/**
 * A mistyped key under a known key id. The refresher runs as
 * `npm run start:refresher` does (main.ts in a child process) against a real PostgreSQL
 * and NATS: a key that differs from the one the database knows under the same id stops
 * start-up with an error naming the id (never the key); new ids are recorded.
 */
describe('refresher: encryption key check at start', () => {
  let nats: NatsServerHandle;
  let database: TestDatabase;
  let db: Db;
  const A = randomBytes(32).toString('base64');
  const B = randomBytes(32).toString('base64');
  const C = randomBytes(32).toString('base64');
  const running: ChildRefresher[] = [];

  beforeAll(async () => {
    [nats, database] = await Promise.all([startNatsServer({ jetstream: true }), createTestDatabase('tk_keycheck')]);
    db = new Db(database.url);
  });

  afterAll(async () => {
    for (const child of running) child.kill();
    await db?.close();
    await nats?.stop();
    await database?.drop();
  });

  const env = (keys: string) => ({
    NODE_ENV: 'test',
    NATS_URL: nats.url,
    DATABASE_URL: database.url,
    TOKEN_ENCRYPTION_KEYS: keys,
    LOG_LEVEL: 'info',
    SHUTDOWN_GRACE_MS: '2000',
  });

  /** Starts main.ts; resolves with 'started' or with the exit and what it printed. */
  async function start(
    keys: string,
  ): Promise<{ started: true; child: ChildRefresher } | { started: false; code: number | null; output: string }> {
    const child = await spawnRefresher(env(keys));
    running.push(child);
    let exit: { code: number | null } | undefined;
    void child.exited.then((e) => (exit = e));
    await waitFor(() => exit !== undefined || child.output().includes('"refresher started"'), {
      timeoutMs: 60_000,
      intervalMs: 50,
      message: 'the refresher to start or exit',
    });
    if (exit) return { started: false, code: exit.code, output: child.output() };
    return { started: true, child };
  }

  async function stop(child: ChildRefresher): Promise<void> {
    child.child.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  }

  it('k1=A starts; k1=B is refused naming k1; k1=A,k2=C starts and records k2', { timeout: 180_000 }, async () => {
    const first = await start(`k1:${A}`);
    expect(first.started).toBe(true);
    // A credential sealed under k1=A, to show that nothing was re-sealed by the refused start.
    const caller = await RawCaller.connect(nats.url);
    try {
      expect(
        (
          await caller.admin('register', {
            tenant: 'keys',
            connection: 'c1',
            provider: 'sandbox',
            accessToken: 'at_sealed_under_A',
            expiresIn: 3600,
          })
        ).ok,
      ).toBe(true);
    } finally {
      await caller.close();
    }
    if (first.started) await stop(first.child);
    const recorded = await db.rows<{ key_id: string; check_value: Buffer }>(
      'SELECT key_id, check_value FROM encryption_keys ORDER BY key_id',
    );
    expect(recorded.map((r) => r.key_id)).toEqual(['k1']);
    expect(recorded[0]!.check_value).toHaveLength(16);
    // Never the key itself, in any encoding.
    expect(recorded[0]!.check_value.equals(Buffer.from(A, 'base64').subarray(0, 16))).toBe(false);
    const sealedBefore = await db.rows('SELECT access_token_enc, key_id, version FROM credentials');

    const wrong = await start(`k1:${B}`);
    expect(wrong.started).toBe(false);
    if (!wrong.started) {
      expect(wrong.code).toBe(1);
      expect(wrong.output).toMatch(/refresher failed to start/);
      expect(wrong.output).toMatch(/key \\?"k1\\?" is not the key this database knows/);
      for (const key of [A, B, Buffer.from(B, 'base64').toString('hex')]) expect(wrong.output).not.toContain(key);
      // Refused before the NATS handlers went live: no request was served with the wrong key.
      expect(wrong.output).not.toContain('Nest microservice successfully started');
    }
    expect(await db.rows('SELECT access_token_enc, key_id, version FROM credentials')).toEqual(sealedBefore);

    const both = await start(`k1:${A},k2:${C}`);
    expect(both.started).toBe(true);
    if (both.started) await stop(both.child);
    expect(
      (await db.rows<{ key_id: string }>('SELECT key_id FROM encryption_keys ORDER BY key_id')).map((r) => r.key_id),
    ).toEqual(['k1', 'k2']);
  });

  it(
    'a database from before the check: a wrong key is refused when rows sealed under its id do not open',
    { timeout: 120_000 },
    async () => {
      // As after the upgrade: the table exists, but knows nothing yet; rows sealed under k1=A exist.
      await db.rows('DELETE FROM encryption_keys');
      const wrong = await start(`k1:${B}`);
      expect(wrong.started).toBe(false);
      if (!wrong.started) expect(wrong.output).toMatch(/key \\?"k1\\?" is not the key this database knows/);
      expect(await db.count('SELECT count(*) AS n FROM encryption_keys')).toBe(0);

      const right = await start(`k1:${A}`);
      expect(right.started).toBe(true);
      if (right.started) await stop(right.child);
      expect(await db.count('SELECT count(*) AS n FROM encryption_keys')).toBe(1);
    },
  );

  it(
    'a database from before the check: a corrupt row among good ones does not refuse the right key, and is named',
    { timeout: 120_000 },
    async () => {
      await db.rows('DELETE FROM encryption_keys');
      await db.rows('DELETE FROM credentials');
      // The first row the check meets holds a ciphertext sealed under k1=A for another row
      // (what a copied or corrupt blob looks like: the right key cannot open it); the rows
      // after it are sealed for themselves.
      const cipher = new TokenCipher(parseKeySpec(`k1:${A}`));
      const seal = (connection: string) =>
        cipher.encrypt(new Secret(`rt_${connection}_${'x'.repeat(24)}`), tokenAad('keys', connection, 'refresh'));
      const rows = [
        { connection: 'copied', blob: seal('g1') },
        ...['g1', 'g2', 'g3', 'g4'].map((connection) => ({ connection, blob: seal(connection) })),
      ];
      for (const row of rows) {
        await db.rows(
          `INSERT INTO credentials (tenant, connection, provider, shard_bucket, status, version, refresh_token_enc, key_id, next_refresh_at)
         VALUES ('keys', $1, 'sandbox', $2, 'active', 1, $3, 'k1', now() + interval '1 day')`,
          [row.connection, shardBucketOf('keys'), row.blob],
        );
      }
      // The premise: a check that decided from the first row alone would meet the copied one.
      expect(
        (await db.rows<{ connection: string }>(`SELECT connection FROM credentials WHERE key_id = 'k1' LIMIT 1`))[0]!
          .connection,
      ).toBe('copied');

      const wrong = await start(`k1:${B}`);
      expect(wrong.started).toBe(false);
      if (!wrong.started)
        expect(wrong.output).toMatch(
          /key \\?"k1\\?" is not the key this database knows under that id \(none of the 5 rows/,
        );
      expect(await db.count('SELECT count(*) AS n FROM encryption_keys')).toBe(0);

      const right = await start(`k1:${A}`);
      expect(right.started).toBe(true);
      if (right.started) {
        const warning = right.child
          .output()
          .split('\n')
          .find((line) => line.includes('key check: some rows sealed under this key id do not decrypt'));
        expect(warning, 'the corrupt row is reported').toBeDefined();
        expect(warning).toContain('keys/copied');
        expect(warning).not.toContain('keys/g1');
        await stop(right.child);
      }
      expect(await db.count('SELECT count(*) AS n FROM encryption_keys')).toBe(1);
    },
  );
});
