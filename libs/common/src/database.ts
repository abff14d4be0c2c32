import pg from 'pg';
import { DataSource, type DataSourceOptions } from 'typeorm';

/**
 * Creates the application database if it does not exist, so that a first start on a
 * fresh PostgreSQL needs no manual step. Connects to the server's `postgres` database
 * with the same credentials; a user without CREATEDB gets a clear error instead.
 */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  if (!name) throw new Error('database URL must name a database');
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`).catch((error: { code?: string }) => {
        // Created concurrently by another replica: 42P04 (duplicate_database), or 23505
        // when both inserts into pg_database race.
        if (error.code !== '42P04' && error.code !== '23505') throw error;
      });
    }
  } finally {
    await client.end();
  }
}

/**
 * Opens the data source and applies pending migrations while holding a PostgreSQL
 * advisory lock, so that replicas starting together on a fresh database do not run the
 * same migration twice (which fails on the catalog's unique indexes). The lock is
 * session-level on one dedicated connection and always released.
 */
export async function openWithMigrations(options: DataSourceOptions, lockName: string): Promise<DataSource> {
  const dataSource = await new DataSource({ ...options, migrationsRun: false }).initialize();
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query(`SELECT pg_advisory_lock(hashtext($1))`, [lockName]);
    try {
      await dataSource.runMigrations({ transaction: 'each' });
    } finally {
      await runner.query(`SELECT pg_advisory_unlock(hashtext($1))`, [lockName]);
    }
  } finally {
    await runner.release();
  }
  return dataSource;
}
