/**
 * Scenario 8: the client as users install it. `@tokenkeeper/contracts` and
 * `@tokenkeeper/client` are packed (tools/pack-libs.ts) and installed from the tarballs
 * into a scratch project outside the repository; its TokenClient (tsc's ESM output) and the
 * in-repo one (this process's sources) then each fill their cache from the same refresher,
 * one `token.get` per credential, in alternating rounds, and read it back (cache hits).
 * Target: the packaged client costs the same (ratio ≥ 0.95 on both).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TokenClient } from '@tokenkeeper/client';
import type { CredentialKey } from '@tokenkeeper/contracts';
import { packLibs } from '../tools/pack-libs.js';
import { clientSync, compare } from './cache-hit.bench.js';
import type { BenchContext } from './support/context.js';
import { register } from './support/env.js';
import { median } from './support/stats.js';

type ClientLike = Pick<TokenClient, 'start' | 'close' | 'getToken' | 'peekAccessToken'>;
type ClientClass = new (options: ConstructorParameters<typeof TokenClient>[0]) => ClientLike;

function installPackaged(): { dir: string; entry: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tk-bench-packaged-'));
  const tarballs = packLibs(join(dir, 'tarballs'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'bench-consumer', private: true, type: 'module' }));
  const npm = spawnSync(
    'npm',
    ['install', ...tarballs, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'],
    {
      cwd: dir,
      encoding: 'utf8',
    },
  );
  if (npm.status !== 0) throw new Error(`installing the packed client failed: ${npm.stderr}`);
  return { dir, entry: join(dir, 'node_modules/@tokenkeeper/client/dist/index.js') };
}

/** Seconds for one `token.get` per key, sequentially (each a cache miss that fills the cache). */
async function fill(client: ClientLike, keys: CredentialKey[]): Promise<number> {
  const t0 = performance.now();
  for (const key of keys) await client.getToken(key);
  return (performance.now() - t0) / 1000;
}

export async function packagedClientBench(ctx: BenchContext): Promise<void> {
  const { caller, report, env } = ctx;
  const { dir, entry } = installPackaged();
  try {
    const { TokenClient: Packaged } = (await import(pathToFileURL(entry).href)) as { TokenClient: ClientClass };
    const rounds = ctx.options.quick ? 4 : 10;
    const perRound = ctx.options.quick ? 100 : 300;
    const keys: CredentialKey[] = Array.from({ length: rounds * perRound * 2 }, (_, i) => ({
      tenant: 'pkg',
      connection: `c${i}`,
    }));
    for (let i = 0; i < keys.length; i += 32) {
      await Promise.all(
        keys.slice(i, i + 32).map((key, j) =>
          register(caller, key, {
            provider: 'sandbox',
            accessToken: `at_pkg_${i + j}_${'x'.repeat(32)}`,
            expiresIn: 3600,
          }),
        ),
      );
    }
    const options = (name: string) => ({
      servers: env.natsUrl,
      tenants: ['pkg'],
      logger: { warn: () => undefined },
      connectOptions: { noAsyncTraces: true, name },
    });
    const clients = {
      repo: new TokenClient(options('bench-repo-client')),
      packaged: new Packaged(options('bench-packaged-client')),
    };
    await Promise.all([clients.repo.start(), clients.packaged.start()]);
    try {
      const rates = { repo: [] as number[], packaged: [] as number[] };
      const held = { repo: [] as CredentialKey[], packaged: [] as CredentialKey[] };
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? (['repo', 'packaged'] as const) : (['packaged', 'repo'] as const);
        for (const [k, which] of order.entries()) {
          const slice = keys.slice((round * 2 + k) * perRound, (round * 2 + k + 1) * perRound);
          rates[which].push(slice.length / (await fill(clients[which], slice)));
          held[which].push(...slice);
        }
      }
      const hits = await compare(
        {
          bare: (n) => clientSync(clients.repo as TokenClient, held.repo, n),
          client: (n) => clientSync(clients.packaged as TokenClient, held.packaged, n),
        },
        100_000,
        ctx.options.quick ? 1_000 : 4_000,
      );
      report.add({
        scenario: 8,
        name: 'packaged_client.token_get_sequential',
        value: median(rates.packaged),
        baseline: median(rates.repo),
        unit: '/s',
        target: { on: 'ratio', op: '>=', limit: 0.95 },
      });
      report.add({
        scenario: 8,
        name: 'packaged_client.cache_hit',
        value: hits.client,
        baseline: hits.bare,
        unit: '/s',
        target: { on: 'ratio', op: '>=', limit: 0.95 },
      });
      report.note(
        `packaged client: installed from the tarballs into ${dir}; baseline is the in-repo client in this process`,
      );
    } finally {
      await Promise.all([clients.repo.close(), clients.packaged.close()]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
