import pg from 'pg';

/**
 * Creates the application database if it does not exist, so that a first start on a
 * fresh PostgreSQL needs no manual step. Connects to the server's `postgres` database
 * with the same credentials; a user without CREATEDB gets a clear error instead.
 */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  if (!name) throw new Error('DATABASE_URL: must name a database');
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`).catch((error: { code?: string }) => {
        if (error.code !== '42P04') throw error; // created concurrently by another replica
      });
    }
  } finally {
    await client.end();
  }
}
