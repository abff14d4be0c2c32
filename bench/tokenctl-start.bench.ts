import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { BenchContext } from './support/context.js';
import { REPO_ROOT } from './support/children.js';

/** Wall time of one run of `node <args>`, in milliseconds; an exit status not in `ok` fails the bench. */
function wallMs(args: string[], ok: readonly number[] = [0]): number {
  const t0 = performance.now();
  const run = spawnSync(process.execPath, args, { cwd: REPO_ROOT, encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (!ok.includes(run.status ?? -1)) throw new Error(`node ${args.join(' ')} exited ${run.status}: ${run.stderr}`);
  return ms;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

interface StartCase {
  name: string;
  args: string[];
  ok?: readonly number[];
  what: string;
}

/**
 * How long a tokenctl command takes from a shell, as hyperfine would measure it: one warm-up
 * run (which compiles into the launcher's cache if the sources changed), then repeated runs,
 * each next to a bare `node -e 0` on the same machine. Reported, not asserted. The NATS
 * command is `audit` on the bench's own nats-server, where no audit app answers: a start,
 * a connection and one request (exit 3, no responders), without any service's own work.
 */
export async function tokenctlStartBench(ctx: BenchContext): Promise<void> {
  const runs = ctx.options.quick ? 5 : 20;
  const launcher = join(REPO_ROOT, 'bin/tokenctl.js');
  const cases: StartCase[] = [
    { name: 'tokenctl.version.wall_ms', args: ['--version'], what: '--version' },
    { name: 'tokenctl.help.wall_ms', args: ['--help'], what: '--help' },
    {
      name: 'tokenctl.nats_command.wall_ms',
      args: ['audit', '--nats-url', ctx.env.natsUrl, '--timeout', '5s'],
      ok: [3],
      what: 'audit, no responder',
    },
  ];
  wallMs([launcher, '--version']);
  for (const { name, args, ok, what } of cases) {
    const tokenctl: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < runs; i++) {
      tokenctl.push(wallMs([launcher, ...args], ok));
      bare.push(wallMs(['-e', '0']));
    }
    const [min, max] = [Math.min(...tokenctl), Math.max(...tokenctl)];
    ctx.report.add({
      scenario: 10,
      name,
      value: median(tokenctl),
      baseline: median(bare),
      unit: ' ms',
      lowerIsBetter: true,
      note: `${what}: median of ${runs} runs (min ${min.toFixed(0)} ms, max ${max.toFixed(0)} ms) against a bare node -e 0`,
    });
  }
  await Promise.resolve();
}
