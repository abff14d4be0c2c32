import { Secret } from '@tokenkeeper/common';
import type pg from 'pg';
import { tokenAad, type TokenCipher } from '../../apps/refresher/src/crypto/token-cipher.js';
import { SHARD_BUCKETS, shardBucketOf } from '../../apps/refresher/src/persistence/credential.mapper.js';

/** A credential written straight into the table, encrypted with the refresher's own cipher. */
export interface RealRow {
  tenant: string;
  connection: string;
  provider: string;
  accessToken?: string;
  refreshToken?: string;
  expiresAt: Date | null;
  nextRefreshAt: Date | null;
}

const INSERT_BATCH = 1_000;

/**
 * Inserts rows with real ciphertexts (each bound to its row by the associated data), in
 * multi-row INSERTs of unnest()ed arrays: what token.register would store, without the
 * round trip per credential.
 */
export async function insertRealRows(db: pg.Pool | pg.Client, cipher: TokenCipher, rows: RealRow[]): Promise<void> {
  const seal = (row: RealRow, field: 'access' | 'refresh', value?: string) =>
    value === undefined ? null : cipher.encrypt(new Secret(value), tokenAad(row.tenant, row.connection, field));
  for (let i = 0; i < rows.length; i += INSERT_BATCH) {
    const batch = rows.slice(i, i + INSERT_BATCH);
    await db.query(
      `INSERT INTO credentials (tenant, connection, provider, shard_bucket, status, version, token_type,
                                access_token_enc, refresh_token_enc, key_id, issued_at, expires_at, next_refresh_at)
       SELECT t, c, p, b, 'active', 1, 'Bearer', a, r, $8, now(), e, n
       FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bytea[], $6::bytea[], $7::timestamptz[], $9::timestamptz[])
         AS u(t, c, p, b, a, r, e, n)`,
      [
        batch.map((r) => r.tenant),
        batch.map((r) => r.connection),
        batch.map((r) => r.provider),
        batch.map((r) => shardBucketOf(r.tenant)),
        batch.map((r) => seal(r, 'access', r.accessToken)),
        batch.map((r) => seal(r, 'refresh', r.refreshToken)),
        batch.map((r) => r.expiresAt),
        cipher.primaryKeyId,
        batch.map((r) => r.nextRefreshAt),
      ],
    );
  }
}

export interface FillSpec {
  /** Rows to add. */
  count: number;
  /** Distinct tenants they are spread over (`<prefix>t0` … ). */
  tenants: number;
  prefix: string;
  provider: string;
  /** next_refresh_at is spread evenly over [fromSeconds, fromSeconds + spanSeconds) from now. */
  fromSeconds: number;
  spanSeconds: number;
}

/** Rows per INSERT: the two ciphertext arrays of one batch are about 1 MB. */
const FILL_BATCH = 5_000;

/**
 * The bulk of a large table, in batches of INSERT … SELECT over unnest()ed ciphertexts. Every
 * row is sealed with the real cipher for its own identity, as token.register would seal it:
 * the table holds nothing a refresher could not open (a shared ciphertext, bound to one row,
 * looked like 999,999 corrupt rows to the start-up key check and the re-encryption sweep).
 * Sealing costs about 10 µs per token in this process, while PostgreSQL inserts the batch
 * before. The rows never become due while the bench runs: next_refresh_at is hours ahead.
 */
export async function fillRows(
  db: pg.Pool | pg.Client,
  cipher: TokenCipher,
  spec: FillSpec,
  onProgress?: (done: number) => void,
): Promise<void> {
  const tenantNames = Array.from({ length: spec.tenants }, (_, i) => `${spec.prefix}t${i}`);
  const buckets = tenantNames.map(shardBucketOf);
  // The same identities as the SQL below builds from i.
  const seal = (i: number, field: 'access' | 'refresh') =>
    cipher.encrypt(
      new Secret(`${field === 'access' ? 'at' : 'rt'}_bulk_${i}_${'x'.repeat(32)}`),
      tokenAad(tenantNames[i % spec.tenants]!, `${spec.prefix}f${i}`, field),
    );
  for (let start = 0; start < spec.count; start += FILL_BATCH) {
    const end = Math.min(spec.count, start + FILL_BATCH);
    const access: Buffer[] = [];
    const refresh: Buffer[] = [];
    for (let i = start; i < end; i++) {
      access.push(seal(i, 'access'));
      refresh.push(seal(i, 'refresh'));
    }
    await db.query(
      `INSERT INTO credentials (tenant, connection, provider, shard_bucket, status, version, token_type,
                                access_token_enc, refresh_token_enc, key_id, issued_at, expires_at, next_refresh_at)
       SELECT $1 || 't' || (i % $3), $1 || 'f' || i, $4, ($5::smallint[])[(i % $3)::int + 1], 'active', 1, 'Bearer',
              u.a, u.r, $8, now(),
              now() + make_interval(secs => $9 + $10 * i / $11::float8 + 600),
              now() + make_interval(secs => $9 + $10 * i / $11::float8)
       FROM unnest($6::bytea[], $7::bytea[]) WITH ORDINALITY AS u(a, r, k), LATERAL (SELECT $2::bigint + u.k - 1 AS i) AS n`,
      [
        spec.prefix,
        start,
        spec.tenants,
        spec.provider,
        buckets,
        access,
        refresh,
        cipher.primaryKeyId,
        spec.fromSeconds,
        spec.spanSeconds,
        spec.count,
      ],
    );
    onProgress?.(end);
  }
}

/**
 * Decrypts `sample` rows picked at random from the whole table, each against its own
 * identity, and throws if any does not open: the bench's data must be what the refresher
 * would have written, or its measurements (and its start) are of another program.
 */
export async function assertRowsDecrypt(db: pg.Pool | pg.Client, cipher: TokenCipher, sample: number): Promise<void> {
  const { rows } = await db.query<{ tenant: string; connection: string; a: Buffer | null; r: Buffer | null }>(
    `SELECT tenant, connection, access_token_enc AS a, refresh_token_enc AS r FROM credentials ORDER BY random() LIMIT $1`,
    [sample],
  );
  const unopened = rows.filter((row) => {
    try {
      if (row.a) cipher.decrypt(row.a, tokenAad(row.tenant, row.connection, 'access'));
      if (row.r) cipher.decrypt(row.r, tokenAad(row.tenant, row.connection, 'refresh'));
      return false;
    } catch {
      return true;
    }
  });
  if (unopened.length > 0) {
    throw new Error(
      `bulk load: ${unopened.length} of ${rows.length} sampled rows do not decrypt for their own identity (first: ${unopened[0]!.tenant}/${unopened[0]!.connection})`,
    );
  }
}

/**
 * Drops the secondary indexes of `credentials` (as the migrations defined them) and
 * returns a function that recreates them exactly, from pg_indexes: a bulk load followed
 * by CREATE INDEX is several times faster than maintaining them row by row.
 */
export async function withoutSecondaryIndexes(db: pg.Pool | pg.Client): Promise<() => Promise<void>> {
  const { rows } = await db.query<{ indexname: string; indexdef: string }>(
    `SELECT i.indexname, i.indexdef FROM pg_indexes i
     WHERE i.tablename = 'credentials' AND i.schemaname = current_schema()
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`,
  );
  for (const row of rows) await db.query(`DROP INDEX "${row.indexname}"`);
  return async () => {
    for (const row of rows) await db.query(row.indexdef);
    await db.query('VACUUM ANALYZE credentials');
  };
}

export { SHARD_BUCKETS };
