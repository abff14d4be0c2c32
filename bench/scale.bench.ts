/**
 * Scenario 4: scale. Two tables, small and large (10,000 and 1,000,000 credentials; the
 * quick mode uses 10,000 and 100,000), bulk-loaded rather than registered:
 *
 * - "fill" rows: the bulk, each sealed for itself, due hours from now (spread over a day);
 * - "backlog" rows: 2,000 real rows, made overdue only for the claim measurement;
 * - "window" rows: real rows with live sandbox refresh-token families, made due at a
 *   steady rate while a refresher runs.
 *
 * Measured: the cost of one claimDue (batch of 100, repository called directly, the
 * refresher not running) at each size; then, with a refresher child running on the
 * table with production defaults, its RSS and the lateness of each window refresh
 * (token.refreshed event received here minus the due time written into the row).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import {
  assertRowsDecrypt,
  fillRows,
  insertRealRows,
  type RealRow,
  withoutSecondaryIndexes,
} from './support/bulk-load.js';
import type { TestDatabase } from '@tokenkeeper/testing';
import type { DataSource } from 'typeorm';
import type { CredentialRepository } from '../apps/refresher/src/persistence/credential.repository.js';
import type { BenchChild } from './support/children.js';
import type { BenchContext } from './support/context.js';
import { percentile, Samples, sortedCopy } from './support/stats.js';
import { sleep } from '@tokenkeeper/common';

const BACKLOG = 2_000;
const CLAIM_BATCH = 100;
const BUCKETS = 16;
const FAR_FUTURE_SECONDS = 30 * 3600;

interface SizeResult {
  size: number;
  loadSeconds: number;
  claimMs: number;
  claimMsP90: number;
  claimedPerCall: number;
  explain: string;
  lateness?: {
    p50: number;
    p99: number;
    max: number;
    refreshed: number;
    expected: number;
    missing: number;
    failed: number;
  };
  /** Bytes; `heap` is the refresher's process.memoryUsage() at the end of the window. */
  rss?: { max: number; peak: number; idle: number; heap?: NodeJS.MemoryUsage };
  /** Idle RSS of the same refresher run through @swc-node/register (full mode, large size). */
  rssSwcIdle?: number;
  tableMiB: number;
  /** Shared buffers touched (hit or read) per claim and its release, from pg_stat_database. */
  buffersPerClaim: number;
}

export async function scaleBench(ctx: BenchContext): Promise<void> {
  const { report, options } = ctx;
  const sizes = [options.scaleSmall, options.scaleLarge];
  const tables: LoadedTable[] = [];
  try {
    for (const size of sizes) tables.push(await loadTable(ctx, size));
    await measureClaims(ctx, tables);
    for (const t of tables) await measureRefresher(ctx, t);
  } finally {
    for (const t of tables) await closeTable(t);
  }
  const results = tables.map((t) => t.result);
  const [small, large] = results as [SizeResult, SizeResult];
  const rate = dueRate(options.quick);
  report.note(
    `scale: ${sizes.join(' vs ')} credentials; claim = claimDue(bucket, ${CLAIM_BATCH}) with ${BACKLOG} overdue rows, median of ${claimIterations(options.quick)} calls per size, alternating ` +
      `(${small.claimedPerCall}/${large.claimedPerCall} rows per call, ${small.buffersPerClaim}/${large.buffersPerClaim} buffers per claim+release); window = ${rate} refreshes/s due for ${windowSeconds(options.quick)} s; ` +
      `load ${small.loadSeconds.toFixed(1)} s / ${large.loadSeconds.toFixed(1)} s; table ${small.tableMiB} / ${large.tableMiB} MiB`,
  );
  report.note(`scale: claim plan at ${large.size}: ${large.explain}`);
  const label = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}m` : `${n / 1000}k`);
  report.add({
    scenario: 4,
    name: `scale.claim_ms_per_batch.${label(large.size)}_vs_${label(small.size)}`,
    value: large.claimMs,
    baseline: small.claimMs,
    unit: 'ms',
    lowerIsBetter: true,
    target: { on: 'ratio', op: '<=', limit: 1.5 },
  });
  if (large.rss && small.rss) {
    report.add({
      scenario: 4,
      name: `scale.refresher_rss_max.${label(large.size)}`,
      value: large.rss.max / 2 ** 20,
      baseline: small.rss.max / 2 ** 20,
      unit: 'MiB',
      lowerIsBetter: true,
      target: { on: 'value', op: '<', limit: 256, unit: 'MiB' },
      note: `baseline = same at ${label(small.size)}; VmHWM ${Math.round(large.rss.peak / 2 ** 20)} MiB, idle ${Math.round(large.rss.idle / 2 ** 20)} MiB, V8 heap ${Math.round((large.rss.heap?.heapTotal ?? 0) / 2 ** 20)} MiB at the end`,
    });
  }
  if (large.rssSwcIdle && large.rss) {
    report.add({
      scenario: 4,
      name: `scale.refresher_rss_idle_swc_register.${label(large.size)}`,
      value: large.rssSwcIdle / 2 ** 20,
      baseline: large.rss.idle / 2 ** 20,
      unit: 'MiB',
      lowerIsBetter: true,
      target: { on: 'value', op: '<', limit: 256, unit: 'MiB' },
      note: 'the same refresher under `node --import @swc-node/register/esm-register`, as the Dockerfile and docker-compose run it, vs compiled, both idle',
    });
  }
  for (const p of ['p50', 'p99'] as const) {
    if (!large.lateness || !small.lateness) continue;
    report.add({
      scenario: 4,
      name: `scale.refresh_lateness_${p}.${label(large.size)}`,
      value: large.lateness[p],
      baseline: small.lateness[p],
      unit: 'ms',
      lowerIsBetter: true,
      target: p === 'p99' ? { on: 'value', op: '<', limit: 1000, unit: 'ms' } : undefined,
      note:
        p === 'p99'
          ? `baseline = same at ${label(small.size)}; ${large.lateness.refreshed}/${large.lateness.expected} refreshed, max ${Math.round(large.lateness.max)} ms`
          : undefined,
    });
  }
  report.series.scale = results;
}

const dueRate = (_quick: boolean) => 100;
const windowSeconds = (quick: boolean) => (quick ? 3 : 30);
const claimIterations = (quick: boolean) => (quick ? 48 : 320);

interface LoadedTable {
  size: number;
  db: TestDatabase;
  dataSource: DataSource;
  repository: CredentialRepository;
  pool: pg.Pool;
  result: SizeResult;
  windowRows: number;
}

/** Creates and bulk-loads one table; its backlog is made overdue, ready for the claim measurement. */
async function loadTable(ctx: BenchContext, size: number): Promise<LoadedTable> {
  const { env, options } = ctx;
  const windowRows = dueRate(options.quick) * windowSeconds(options.quick);
  const db = await env.createDatabase('tk_scale');
  const { dataSource, repository } = await env.openRepository(db.url);
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  const table = { size, db, dataSource, repository, pool, windowRows };
  try {
    return { ...table, result: await fillTable(ctx, table) };
  } catch (error) {
    // Closed here, so that dropping the database cannot meet an idle client of a table
    // that never reached the caller (an unhandled pool error would hide this error).
    await closeTable(table);
    throw error;
  }
}

async function fillTable(
  ctx: BenchContext,
  { size, pool, windowRows }: Omit<LoadedTable, 'result'>,
): Promise<SizeResult> {
  const { env } = ctx;
  const t0 = performance.now();
  const restoreIndexes = await withoutSecondaryIndexes(pool);
  const fillCount = size - BACKLOG - windowRows;
  if (fillCount < 0) throw new Error(`scale size ${size} is smaller than the backlog and window rows`);
  const fillChunks = Array.from({ length: 4 }, (_, k) => ({
    start: Math.floor((fillCount * k) / 4),
    end: Math.floor((fillCount * (k + 1)) / 4),
  }));
  // Four connections load four ranges side by side (one INSERT … SELECT each).
  await Promise.all(
    fillChunks.map((chunk, k) =>
      fillRows(pool, env.cipher, {
        count: chunk.end - chunk.start,
        tenants: 250,
        prefix: `s${k}`,
        provider: 'sandbox',
        fromSeconds: 2 * 3600 + (24 * 3600 * k) / 4,
        spanSeconds: (24 * 3600) / 4,
      }),
    ),
  );
  const families = await env.sandbox.call<string[]>('issueRefreshTokens', { count: windowRows });
  const farFuture = new Date(Date.now() + FAR_FUTURE_SECONDS * 1000);
  const real: RealRow[] = [
    ...Array.from({ length: BACKLOG }, (_, i) => ({
      tenant: `bt${i % 100}`,
      connection: `b${i}`,
      provider: 'sandbox',
      accessToken: `at_backlog_${i}_${'x'.repeat(24)}`,
      refreshToken: `rt_backlog_${i}_${'x'.repeat(24)}`,
      expiresAt: farFuture,
      nextRefreshAt: farFuture,
    })),
    ...families.map((refreshToken, i) => ({
      tenant: `wt${i % 100}`,
      connection: `w${i}`,
      provider: 'sandbox',
      accessToken: `at_window_${i}_${'x'.repeat(24)}`,
      refreshToken,
      expiresAt: farFuture,
      nextRefreshAt: farFuture,
    })),
  ];
  await insertRealRows(pool, env.cipher, real);
  await restoreIndexes();
  await pool.query(
    `UPDATE credentials SET next_refresh_at = now() - make_interval(secs => random() * 600) WHERE tenant LIKE 'bt%'`,
  );
  await pool.query('VACUUM ANALYZE credentials');
  await assertRowsDecrypt(pool, env.cipher, 1_000);
  // A database that has been running is checkpointed every few minutes; one that was just
  // bulk-loaded has its shared buffers full of dirty pages, and every claim would pay for
  // writing some of them out (measured: 100 backend writes per claim at 1M rows).
  await pool.query('CHECKPOINT');
  const loadSeconds = (performance.now() - t0) / 1000;
  const tableMiB = Math.round(
    Number((await pool.query(`SELECT pg_total_relation_size('credentials') AS b`)).rows[0].b) / 2 ** 20,
  );
  console.log(`# scale ${size}: loaded in ${loadSeconds.toFixed(1)} s (${tableMiB} MiB)`);
  return { size, loadSeconds, tableMiB, claimMs: 0, claimMsP90: 0, claimedPerCall: 0, buffersPerClaim: 0, explain: '' };
}

/**
 * claimDue through the repository, alternating between the tables call by call so that
 * both see the same machine; each claim is released by primary key (untimed) so that the
 * same backlog is claimed again and again.
 */
async function measureClaims(ctx: BenchContext, tables: LoadedTable[]): Promise<void> {
  const owner = 'bench-claimer';
  const release = (t: LoadedTable, rows: { credential: { tenant: string; connection: string } }[]) =>
    t.pool.query(
      `UPDATE credentials c SET lease_id = NULL, lease_owner = NULL, lease_until = NULL
       FROM unnest($1::text[], $2::text[]) AS k(tenant, connection)
       WHERE c.tenant = k.tenant AND c.connection = k.connection`,
      [rows.map((r) => r.credential.tenant), rows.map((r) => r.credential.connection)],
    );
  const blocks = async (t: LoadedTable) =>
    Number(
      (await t.pool.query(`SELECT blks_hit + blks_read AS b FROM pg_stat_database WHERE datname = current_database()`))
        .rows[0].b,
    );
  for (let i = 0; i < BUCKETS; i++) {
    for (const t of tables) await release(t, await t.repository.claimDue(i, CLAIM_BATCH, owner, 30));
  }
  const iterations = claimIterations(ctx.options.quick);
  const times = tables.map(() => new Samples(1024));
  const claimed = tables.map(() => 0);
  await sleep(600); // pg_stat_database is updated at most every 500 ms
  const blocksBefore = await Promise.all(tables.map(blocks));
  for (let i = 0; i < iterations; i++) {
    const order = i % 2 === 0 ? tables.map((_, k) => k) : tables.map((_, k) => tables.length - 1 - k);
    for (const k of order) {
      const t = tables[k]!;
      const started = performance.now();
      const rows = await t.repository.claimDue(i % BUCKETS, CLAIM_BATCH, owner, 30);
      times[k]!.push(performance.now() - started);
      claimed[k]! += rows.length;
      await release(t, rows);
    }
  }
  await sleep(600);
  const blocksAfter = await Promise.all(tables.map(blocks));
  for (const [k, t] of tables.entries()) {
    const sorted = times[k]!.sorted();
    t.result.claimMs = percentile(sorted, 50);
    t.result.claimMsP90 = percentile(sorted, 90);
    t.result.claimedPerCall = Math.round(claimed[k]! / iterations);
    // Buffers touched per claim, its release included (both go through the primary key).
    t.result.buffersPerClaim = Math.round((blocksAfter[k]! - blocksBefore[k]!) / iterations);
    t.result.explain = await explainClaim(t.pool);
    await t.pool.query(`UPDATE credentials SET next_refresh_at = $1 WHERE tenant LIKE 'bt%'`, [
      new Date(Date.now() + FAR_FUTURE_SECONDS * 1000),
    ]);
    // The claim/release cycles left a refresh_started record per claimed row in the
    // outbox; a refresher started now would first relay tens of thousands of them, which
    // no running deployment does. They are measurement debris: drop them.
    await t.pool.query('TRUNCATE outbox');
    console.log(
      `# scale ${t.size}: claimDue median ${t.result.claimMs.toFixed(2)} ms, p90 ${t.result.claimMsP90.toFixed(2)} ms, ${t.result.buffersPerClaim} buffers per claim and release`,
    );
  }
}

/** A refresher on the table: RSS and lateness while a steady share is due. */
async function measureRefresher(ctx: BenchContext, t: LoadedTable): Promise<void> {
  const { env, options } = ctx;
  const refresher = await env.startRefresher(t.db.url);
  try {
    const measured = await latenessWindow(ctx, refresher, t.pool, t.windowRows, dueRate(options.quick));
    t.result.lateness = measured.lateness;
    t.result.rss = measured.rss;
    console.log(
      `# scale ${t.size}: lateness p50 ${measured.lateness.p50.toFixed(0)} ms, p99 ${measured.lateness.p99.toFixed(0)} ms (${measured.lateness.refreshed}/${measured.lateness.expected}); RSS max ${Math.round(measured.rss.max / 2 ** 20)} MiB`,
    );
  } finally {
    await env.stopChild(refresher);
  }
  if (!options.quick && t.size === options.scaleLarge) {
    // The same refresher started the way the Dockerfile and docker-compose start it today,
    // through the @swc-node/register loader: idle RSS, what the loader itself costs.
    const swc = await env.startRefresher(t.db.url, {}, [], 'swc');
    try {
      await sleep(3_000);
      t.result.rssSwcIdle = swc.memory().rss;
    } finally {
      await env.stopChild(swc);
    }
  }
}

async function closeTable(t: Omit<LoadedTable, 'result'>): Promise<void> {
  await t.pool.end();
  await t.dataSource.destroy();
  await t.db.drop();
}

/** The claim's row-finding part under EXPLAIN ANALYZE (without the writes): the plan and the buffers it touched. */
async function explainClaim(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)
     SELECT tenant, connection FROM credentials
     WHERE shard_bucket = 3 AND next_refresh_at <= now() AND (lease_until IS NULL OR lease_until < now())
     ORDER BY next_refresh_at LIMIT 100 FOR UPDATE SKIP LOCKED`,
  );
  return rows
    .map((r) => r['QUERY PLAN'].trim())
    .filter((l) => /Index|Buffers|Execution|Rows Removed/.test(l))
    .join('; ');
}

async function latenessWindow(
  ctx: BenchContext,
  refresher: BenchChild,
  pool: pg.Pool,
  windowRows: number,
  rate: number,
) {
  const caller: NatsConnection = ctx.caller;
  const rssSamples: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      rssSamples.push(refresher.memory().rss);
      await sleep(200);
    }
  })();
  try {
    // Let start-up work settle (JIT, the first claim ticks) before the window opens.
    await sleep(ctx.options.quick ? 1_000 : 3_000);
    const idle = refresher.memory().rss;
    const dueAt = new Map<string, number>();
    const received: number[] = [];
    let failed = 0;
    const sub = caller.subscribe('token.*.*.*', {
      callback: (_err, msg) => {
        const [, kind, tenant, connection] = msg.subject.split('.');
        if (!tenant?.startsWith('wt') || !connection) return;
        if (kind === 'failed') failed++;
        if (kind !== 'refreshed') return;
        const due = dueAt.get(connection);
        if (due !== undefined) {
          received.push(Date.now() - due);
          dueAt.delete(connection);
        }
      },
    });
    await caller.flush();
    const start = Date.now() + 1_000;
    const connections = Array.from({ length: windowRows }, (_, i) => `w${i}`);
    const dues = connections.map((_, i) => start + Math.floor((i * 1000) / rate));
    connections.forEach((c, i) => dueAt.set(c, dues[i]!));
    await pool.query(
      `UPDATE credentials c SET next_refresh_at = u.due FROM unnest($1::text[], $2::timestamptz[]) AS u(conn, due)
       WHERE c.tenant LIKE 'wt%' AND c.connection = u.conn`,
      [connections, dues.map((d) => new Date(d))],
    );
    const deadline = start + (windowRows * 1000) / rate + 5_000;
    while (dueAt.size > 0 && Date.now() < deadline) await sleep(50);
    sub.unsubscribe();
    const sorted = sortedCopy(received);
    // A refresh that never came is as late as the window allowed: counted, not dropped.
    const missing = dueAt.size;
    const all = missing
      ? sortedCopy([...received, ...Array.from({ length: missing }, () => Number.POSITIVE_INFINITY)])
      : sorted;
    return {
      lateness: {
        p50: percentile(all, 50),
        p99: percentile(all, 99),
        max: sorted.at(-1) ?? Number.NaN,
        refreshed: received.length,
        expected: windowRows,
        missing,
        failed,
      },
      rss: {
        max: Math.max(...rssSamples),
        peak: refresher.memory().peak,
        idle,
        heap: await refresher.call<NodeJS.MemoryUsage>('gc'),
      },
    };
  } finally {
    sampling = false;
    await sampler;
  }
}
