import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createTestDatabase } from './database.harness.js';

async function databaseExists(name: string): Promise<boolean> {
  const admin = new pg.Client({
    connectionString: process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return rowCount === 1;
  } finally {
    await admin.end();
  }
}

describe('createTestDatabase', () => {
  it('creates a uniquely named database and drops it even while connections are open', async () => {
    const [db, other] = await Promise.all([createTestDatabase('tkharness'), createTestDatabase('tkharness')]);
    try {
      expect(db.name).toMatch(/^tkharness_[0-9a-f]{12}$/);
      expect(other.name).not.toBe(db.name);
      expect(new URL(db.url).pathname).toBe(`/${db.name}`);

      const client = new pg.Client({ connectionString: db.url });
      // drop() terminates this connection, which pg reports as an error event.
      client.on('error', () => undefined);
      await client.connect();
      const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
      expect(rows[0]!.db).toBe(db.name);

      await db.drop();
      expect(await databaseExists(db.name)).toBe(false);
      await db.drop();
      await client.end().catch(() => undefined);
    } finally {
      await Promise.all([db.drop(), other.drop()]);
    }
    expect(await databaseExists(other.name)).toBe(false);
  });

  it('refuses a prefix that is not a safe identifier', async () => {
    await expect(createTestDatabase('x"; DROP DATABASE postgres; --')).rejects.toThrow(/invalid database prefix/);
  });
});
