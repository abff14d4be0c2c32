import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  /** Terminates the connections still open on it and drops it; safe to call twice. */
  drop(): Promise<void>;
}

const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates a throwaway database so that each test file gets its own schema and
 * migrations run from scratch. The admin URL comes from TEST_PG_ADMIN_URL when set.
 */
export async function createTestDatabase(prefix = 'tk'): Promise<TestDatabase> {
  // The name is interpolated into DDL (identifiers cannot be bound), so it is restricted to a safe alphabet.
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(prefix)) throw new Error(`invalid database prefix: ${prefix}`);
  const adminUrl = process.env.TEST_PG_ADMIN_URL ?? DEFAULT_ADMIN_URL;
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await withAdmin(adminUrl, (client) => client.query(`CREATE DATABASE "${name}"`));

  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    url: url.toString(),
    name,
    async drop() {
      if (dropped) return;
      await withAdmin(adminUrl, async (client) => {
        // A pool the test forgot to close would otherwise make DROP DATABASE fail.
        await client.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [name],
        );
        await client.query(`DROP DATABASE IF EXISTS "${name}"`);
      });
      dropped = true;
    },
  };
}
