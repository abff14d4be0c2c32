import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { BenchContext } from './support/context.js';
import { REPO_ROOT } from './support/children.js';

/** Wall time of one run of `node <args>`, in milliseconds; a failed run fails the bench. */
function wallMs(args: string[]): number {
  const t0 = performance.now();
  const run = spawnSync(process.execPath, args, { cwd: REPO_ROOT, encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (run.status !== 0) throw new Error(`node ${args.join(' ')} exited ${run.status}: ${run.stderr}`);
  return ms;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * How long `tokenctl --version` takes from a shell, as hyperfine would measure it: one warm-up
 * run (which compiles into the launcher's cache if the sources changed), then repeated runs,
 * next to a bare `node -e 0` on the same machine. Reported, not asserted.
 */
export async function tokenctlStartBench(ctx: BenchContext): Promise<void> {
  const runs = ctx.options.quick ? 5 : 20;
  const launcher = [join(REPO_ROOT, 'bin/tokenctl.js'), '--version'];
  wallMs(launcher);
  const tokenctl: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < runs; i++) {
    tokenctl.push(wallMs(launcher));
    bare.push(wallMs(['-e', '0']));
  }
  const [min, max] = [Math.min(...tokenctl), Math.max(...tokenctl)];
  ctx.report.add({
    scenario: 10,
    name: 'tokenctl.version.wall_ms',
    value: median(tokenctl),
    baseline: median(bare),
    unit: ' ms',
    lowerIsBetter: true,
    note: `median of ${runs} runs (min ${min.toFixed(0)} ms, max ${max.toFixed(0)} ms) against a bare node -e 0`,
  });
  await Promise.resolve();
}
