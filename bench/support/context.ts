import type { NatsConnection } from '@nats-io/transport-node';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type BenchChild, REPO_ROOT } from './children.js';
import type { BenchEnv } from './env.js';
import type { Report } from './report.js';

export interface BenchOptions {
  quick: boolean;
  /** Scenario numbers to run (default all). */
  only: Set<number>;
  /** Table sizes for the scale scenario. */
  scaleSmall: number;
  scaleLarge: number;
  /** Where the chart goes. */
  svgPath: string;
  /** Pass `--cpu-prof` to the refresher child (profiles land in bench/results/profiles). */
  profile: boolean;
}

export interface BenchContext {
  options: BenchOptions;
  env: BenchEnv;
  report: Report;
  /** A raw nats.js connection (noAsyncTraces) in the bench process. */
  caller: NatsConnection;
  /** The refresher of scenarios 1, 2, 3 and 5, on the main database. */
  refresher: BenchChild;
  mainDatabaseUrl: string;
}

/**
 * Runs `work` under a CPU profile of `child` when --profile is given (the profile of
 * that window only, written to bench/results/profiles/<name>.cpuprofile).
 */
export async function profiled<T>(
  ctx: BenchContext,
  child: BenchChild,
  name: string,
  work: () => Promise<T>,
): Promise<T> {
  if (!ctx.options.profile) return work();
  const dir = join(REPO_ROOT, 'bench/results/profiles');
  mkdirSync(dir, { recursive: true });
  await child.call('profileStart');
  try {
    return await work();
  } finally {
    const file = await child.call<string>('profileStop', { file: join(dir, `${name}.cpuprofile`) });
    console.log(`# profile of ${child.name} written to ${file}`);
  }
}

/** Duration of one measurement and number of alternating rounds, by mode. */
export function timing(options: BenchOptions): { measureMs: number; rounds: number; warmupMs: number } {
  return options.quick
    ? { measureMs: 300, rounds: 3, warmupMs: 400 }
    : { measureMs: 2_000, rounds: 5, warmupMs: 2_000 };
}
