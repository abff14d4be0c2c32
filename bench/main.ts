/**
 * `npm run bench [-- --quick] [-- --only 1,3] [-- --scale 10000,1000000] [-- --svg path] [-- --profile]`
 *
 * Runs every scenario of docs/benchmarks.md next to its raw baseline on this machine's
 * PostgreSQL and a nats-server of its own, and prints one line per result:
 *   <name> value=<measured> baseline=<raw> ratio=<x> target=<y> PASS|FAIL|INFO
 * Targets are reported, not asserted: the exit code is 0 when every scenario ran, even
 * if a target failed, and non-zero only when the bench itself crashed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { cacheHitBench } from './cache-hit.bench.js';
import { clientVerifyBench } from './client-verify.bench.js';
import { refreshPipelineBench } from './refresh-pipeline.bench.js';
import { scaleBench } from './scale.bench.js';
import { signingBench } from './signing.bench.js';
import { storm401Bench } from './storm-401.bench.js';
import { BUILD_DIR, buildChildren } from './support/build.js';
import { REPO_ROOT, useCompiledChildren } from './support/children.js';
import type { BenchContext, BenchOptions } from './support/context.js';
import { BenchEnv, connectCaller } from './support/env.js';
import { machineInfo } from './support/machine.js';
import { Report } from './support/report.js';
import { renderChart } from './support/svg-chart.js';
import { tokenGetBench } from './token-get.bench.js';
import { packagedClientBench } from './packaged-client.bench.js';
import { goConsumerBench } from './go-consumer.bench.js';
import { tokenctlStartBench } from './tokenctl-start.bench.js';

function parseOptions(argv: string[]): BenchOptions {
  const quick = argv.includes('--quick');
  const value = (flag: string) => {
    const i = argv.indexOf(flag);
    if (i >= 0) return argv[i + 1];
    return argv.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
  };
  const only = value('--only');
  const scale = value('--scale')?.split(',').map(Number);
  return {
    quick,
    only: new Set(only ? only.split(',').map(Number) : [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    scaleSmall: scale?.[0] ?? 10_000,
    scaleLarge: scale?.[1] ?? (quick ? 100_000 : 1_000_000),
    svgPath: resolve(
      REPO_ROOT,
      value('--svg') ?? (quick ? 'bench/results/benchmarks-quick.svg' : 'docs/benchmarks.svg'),
    ),
    profile: argv.includes('--profile'),
  };
}

const SCENARIOS: Array<[number, string, (ctx: BenchContext) => Promise<void>]> = [
  [1, 'token.get vs NATS echo', tokenGetBench],
  [2, 'client cache hit vs Map.get + expiry', cacheHitBench],
  [5, '401 storm', storm401Bench],
  [3, 'refresh pipeline vs undici POST / single-row UPDATE', refreshPipelineBench],
  [4, 'scale: claim cost, RSS, lateness', scaleBench],
  [6, 'Ed25519 sign/verify: native crypto vs nkeys (tweetnacl)', signingBench],
  [7, 'client: CPU per verified event, cache hit of a verifying client', clientVerifyBench],
  [8, 'the packaged client (installed from the tarballs) vs the in-repo client', packagedClientBench],
  [9, 'the Go consumer: verified token.get vs a bare Go echo responder (info)', goConsumerBench],
  [10, 'tokenctl start: --version, --help and a NATS command, wall time vs bare node', tokenctlStartBench],
];

async function main(): Promise<void> {
  const started = Date.now();
  const options = parseOptions(process.argv.slice(2));
  const report = new Report();
  const machine = await machineInfo();
  const mode = options.quick ? 'quick' : 'full';
  console.log(
    `# tokenkeeper bench (${mode}) on ${machine.nproc}x ${machine.cpuModel}, ${machine.memoryGiB} GiB, node ${machine.node}, PostgreSQL ${machine.postgres}, nats-server ${machine.natsServer}; load average ${machine.loadAverage.join(' ')}`,
  );
  // The refresher and the other children run compiled, as a deployment would (see build.ts).
  // --no-build reuses bench/results/build as it is (for A/B experiments on the compiled code).
  if (!process.argv.includes('--no-build')) {
    const build = await buildChildren();
    console.log(`# compiled ${build.files} files for the child processes in ${build.seconds.toFixed(1)} s`);
  }
  useCompiledChildren(BUILD_DIR);
  if (options.quick) {
    console.log(
      `# quick mode: small sizes, not the documented run: token.get 3 rounds of 300 ms per point, 1,000 refreshes per pipeline run, ` +
        `scale ${options.scaleSmall.toLocaleString('en')} vs ${options.scaleLarge.toLocaleString('en')} credentials (not 1,000,000), a 3 s lateness window`,
    );
  }
  const env = new BenchEnv();
  let failed: unknown;
  try {
    await env.start();
    const mainDb = await env.createDatabase('tk_bench');
    const needsRefresher = [1, 2, 3, 5, 8, 9].some((n) => options.only.has(n));
    const refresher = needsRefresher
      ? await env.startRefresher(mainDb.url, { BENCH_PROVIDER_CONCURRENCY: '32' })
      : undefined;
    const caller = await connectCaller(env.natsUrl, 'bench-caller');
    const ctx: BenchContext = { options, env, report, caller, refresher: refresher!, mainDatabaseUrl: mainDb.url };
    try {
      for (const [n, title, run] of SCENARIOS) {
        if (!options.only.has(n)) continue;
        const t0 = Date.now();
        console.log(`\n## ${n}. ${title}`);
        await run(ctx);
        console.log(`# scenario ${n} took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      }
    } finally {
      await caller.close();
      if (refresher) await env.stopChild(refresher);
    }
  } catch (error) {
    failed = error;
  } finally {
    await env.close();
  }
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows what was caught
  if (failed) throw failed;

  const seconds = (Date.now() - started) / 1000;
  const loadAfter = loadavg().map((l) => Math.round(l * 100) / 100);
  const failedTargets = report.results.filter((r) => r.pass === false).map((r) => r.name);
  console.log(`\n# ${mode} run took ${seconds.toFixed(1)} s; load average now ${loadAfter.join(' ')}`);
  console.log(
    `# targets: ${report.results.filter((r) => r.pass === true).length} pass, ${failedTargets.length} fail${failedTargets.length ? ` (${failedTargets.join(', ')})` : ''}`,
  );

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(REPO_ROOT, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const record = {
    mode,
    command,
    startedAt: new Date(started).toISOString(),
    seconds,
    machine,
    loadAfter,
    results: report.results,
    notes: report.notes,
    series: report.series,
  };
  writeFileSync(join(resultsDir, `${mode}-${stamp}.json`), JSON.stringify(record, null, 2));
  writeFileSync(
    join(resultsDir, `${mode}-latest.md`),
    `${command}\n\n${report.markdownTable()}\n\n${report.notes.map((n) => `- ${n}`).join('\n')}\n`,
  );
  if (options.only.has(1) || options.only.has(3)) {
    mkdirSync(dirname(options.svgPath), { recursive: true });
    writeFileSync(options.svgPath, renderChart(record));
    console.log(
      `# chart written to ${relative(REPO_ROOT, options.svgPath)}; results in bench/results/${mode}-${stamp}.json`,
    );
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error('bench crashed:', error);
    process.exit(1);
  },
);
