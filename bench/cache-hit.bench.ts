/**
 * Scenario 2: a TokenClient cache hit against a bare Map.get plus an expiry check, in
 * this process. The client's cache is filled the real way (token.get through the
 * refresher); the baseline Map holds the same tokens under prebuilt string ids, while
 * the client is asked with `{tenant, connection}` key objects, as its API takes them.
 *
 * Two pairs: the synchronous `peekAccessToken` vs `Map.get` + check, and the awaited
 * `getAccessToken` vs an awaited `Map.get` + check (both pay one await per call).
 */
import { TokenClient } from '@tokenkeeper/client';
import { credentialId, type CredentialKey } from '@tokenkeeper/contracts';
import type { BenchContext } from './support/context.js';
import { register } from './support/env.js';
import { median } from './support/stats.js';

export interface BareEntry {
  accessToken: string;
  expiresAtMs: number;
}

const MIN_TTL_MS = 30_000;

export function bareSync(map: Map<string, BareEntry>, ids: string[], n: number): number {
  let sink = 0;
  const len = ids.length;
  for (let i = 0; i < n; i++) {
    const entry = map.get(ids[i % len]!);
    if (entry !== undefined && entry.expiresAtMs - Date.now() >= MIN_TTL_MS) sink += entry.accessToken.length;
  }
  return sink;
}

export function clientSync(client: TokenClient, keys: CredentialKey[], n: number): number {
  let sink = 0;
  const len = keys.length;
  for (let i = 0; i < n; i++) {
    const token = client.peekAccessToken(keys[i % len]!);
    if (token !== undefined) sink += token.length;
  }
  return sink;
}

async function bareAsync(map: Map<string, BareEntry>, ids: string[], n: number): Promise<number> {
  let sink = 0;
  const len = ids.length;
  const lookup = (id: string) => {
    const entry = map.get(id);
    return entry !== undefined && entry.expiresAtMs - Date.now() >= MIN_TTL_MS ? entry.accessToken : undefined;
  };
  for (let i = 0; i < n; i++) {
    // The baseline pays what an async API costs: one await per lookup.
    // eslint-disable-next-line @typescript-eslint/await-thenable
    const token = await lookup(ids[i % len]!);
    if (token !== undefined) sink += token.length;
  }
  return sink;
}

async function clientAsync(client: TokenClient, keys: CredentialKey[], n: number): Promise<number> {
  let sink = 0;
  const len = keys.length;
  for (let i = 0; i < n; i++) sink += (await client.getAccessToken(keys[i % len]!)).length;
  return sink;
}

/** Ops/s of `batch(n)`, batches alternating between the two, median of each. */
export async function compare(
  pairs: { bare: (n: number) => number | Promise<number>; client: (n: number) => number | Promise<number> },
  batchOps: number,
  totalMs: number,
): Promise<{ bare: number; client: number; sink: number }> {
  const rates = { bare: [] as number[], client: [] as number[] };
  let sink = 0;
  const end = performance.now() + totalMs;
  for (let round = 0; performance.now() < end || round < 4; round++) {
    for (const which of round % 2 === 0 ? (['bare', 'client'] as const) : (['client', 'bare'] as const)) {
      const t0 = performance.now();
      sink += await pairs[which](batchOps);
      rates[which].push(batchOps / ((performance.now() - t0) / 1000));
    }
  }
  return { bare: median(rates.bare), client: median(rates.client), sink };
}

export async function cacheHitBench(ctx: BenchContext): Promise<void> {
  const { caller, report, env } = ctx;
  const count = ctx.options.quick ? 200 : 1_000;
  const keys: CredentialKey[] = Array.from({ length: count }, (_, i) => ({
    tenant: `cache-t${i % 50}`,
    connection: `c${i}`,
  }));
  for (let i = 0; i < keys.length; i += 32) {
    await Promise.all(
      keys.slice(i, i + 32).map(async (key, j) => {
        const reply = await register(caller, key, {
          provider: 'sandbox',
          accessToken: `at_cache_${i + j}_${'x'.repeat(32)}`,
          expiresIn: 3600,
        });
        if (!reply.ok) throw new Error(`register failed: ${JSON.stringify(reply.error)}`);
      }),
    );
  }
  const tenants = [...new Set(keys.map((k) => k.tenant))];
  const client = new TokenClient({
    servers: env.natsUrl,
    tenants,
    logger: { warn: () => undefined },
    connectOptions: { noAsyncTraces: true, name: 'bench-cache-client' },
  });
  await client.start();
  try {
    const bare = new Map<string, BareEntry>();
    for (const key of keys) {
      const view = await client.getToken(key);
      bare.set(credentialId(key), { accessToken: view.accessToken, expiresAtMs: Date.parse(view.expiresAt!) });
    }
    // Fresh objects, not the ones used to fill the cache: a caller's keys are its own.
    const clientKeys = keys.map((k) => ({ tenant: `${k.tenant}`, connection: `${k.connection}` }));
    const ids = keys.map(credentialId);
    const before = client.stats.hits;
    const totalMs = ctx.options.quick ? 1_200 : 6_000;
    // Warm-up, so that both loops are optimised before they are timed.
    await compare(
      { bare: (n) => bareSync(bare, ids, n), client: (n) => clientSync(client, clientKeys, n) },
      100_000,
      200,
    );
    const sync = await compare(
      { bare: (n) => bareSync(bare, ids, n), client: (n) => clientSync(client, clientKeys, n) },
      200_000,
      totalMs,
    );
    const awaited = await compare(
      { bare: (n) => bareAsync(bare, ids, n), client: (n) => clientAsync(client, clientKeys, n) },
      100_000,
      totalMs,
    );
    if (client.stats.misses > count) report.note(`cache-hit: ${client.stats.misses - count} unexpected misses`);
    report.note(
      `cache-hit: ${count} credentials, ${client.stats.hits - before} client hits measured, key objects {tenant, connection} vs prebuilt string ids`,
    );
    report.add({
      scenario: 2,
      name: 'cache_hit.peekAccessToken',
      value: sync.client,
      baseline: sync.bare,
      unit: '/s',
      target: { on: 'ratio', op: '>=', limit: 0.7 },
    });
    report.add({
      scenario: 2,
      name: 'cache_hit.getAccessToken_awaited',
      value: awaited.client,
      baseline: awaited.bare,
      unit: '/s',
      target: { on: 'ratio', op: '>=', limit: 0.7 },
    });
    report.series.cacheHit = { sync, awaited };
  } finally {
    await client.close();
  }
}
