/**
 * Scenario 1: token.get through the refresher against a bare NATS echo responder on the
 * same nats-server, answering with a reply of the same size. Both responders are child
 * processes; the caller is one raw nats.js connection (noAsyncTraces) in this process.
 * Measurements alternate between the two, round after round, and the median of the
 * rounds is reported.
 */
import { encodeJson, tokenGetSubject } from '@tokenkeeper/contracts';
import type { BenchChild } from './support/children.js';
import { type BenchContext, profiled, timing } from './support/context.js';
import { CpuAccounting, describePerOp, perOp } from './support/cpu-accounting.js';
import { register } from './support/env.js';
import { closedLoop, type LoadResult, type LoadTarget, openLoop } from './support/nats-load.js';
import { median } from './support/stats.js';

const LEVELS = [1, 64, 256];
const KEY = { tenant: 'bench', connection: 'token-get' };

export async function tokenGetBench(ctx: BenchContext): Promise<void> {
  const { caller, report, env, refresher } = ctx;
  const { measureMs, rounds, warmupMs } = timing(ctx.options);

  const tokens = await env.sandbox.call<{ accessToken: string; refreshToken: string }>('issueTokens');
  const registered = await register(caller, KEY, { provider: 'sandbox', ...tokens, expiresIn: 3600 });
  if (!registered.ok) throw new Error(`register failed: ${JSON.stringify(registered.error)}`);
  // The wire contract: the subject names the credential; a consumer asking with defaults sends `{}`.
  const getSubject = tokenGetSubject(KEY.tenant, KEY.connection);
  const payload = encodeJson({});
  const first = await caller.request(getSubject, payload, { timeout: 10_000 });
  const firstReply = first.json<{ ok: boolean; error?: unknown }>();
  if (!firstReply.ok) throw new Error(`token.get failed: ${JSON.stringify(firstReply.error)}`);
  const replyBytes = first.data.length;

  const echo = await env.startEcho(replyBytes);
  try {
    const subject: LoadTarget = { name: 'refresher', subject: getSubject, payload };
    const baseline: LoadTarget = { name: 'echo', subject: 'bench.echo', payload };
    const responders = new Map<LoadTarget, BenchChild>([
      [subject, refresher],
      [baseline, echo],
    ]);
    report.note(
      `token.get: request ${payload.length} B, reply ${replyBytes} B (echo replies with the same size); ${rounds} round(s) of ${measureMs} ms per point`,
    );

    for (const target of [baseline, subject]) await closedLoop(caller, target, 64, warmupMs);

    const cpu = { echo: [] as number[], refresher: [] as number[] };
    const split = { echo: [] as Record<string, number>[], refresher: [] as Record<string, number>[] };
    const byLevel = new Map<number, { echo: LoadResult[]; refresher: LoadResult[] }>();
    for (const level of LEVELS) {
      const runs = { echo: [] as LoadResult[], refresher: [] as LoadResult[] };
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? [baseline, subject] : [subject, baseline];
        for (const target of order) {
          const child = responders.get(target)!;
          const cpuBefore = child.cpuMs();
          const acct =
            level === 64 ? await CpuAccounting.begin({ responder: child.pid, 'nats-server': env.natsPid }) : undefined;
          const result =
            target === subject && level === 64 && round === 0
              ? await profiled(ctx, refresher, 'token-get-inflight-64', () =>
                  closedLoop(caller, target, level, measureMs),
                )
              : await closedLoop(caller, target, level, measureMs);
          if (result.errors > 0)
            report.note(`token.get: ${result.errors} errors from ${target.name} at ${level} in flight`);
          runs[target.name as 'echo' | 'refresher'].push(result);
          if (level === 64)
            cpu[target.name as 'echo' | 'refresher'].push(((child.cpuMs() - cpuBefore) * 1000) / result.completed);
          if (acct) split[target.name as 'echo' | 'refresher'].push(perOp(await acct.end(), result.completed));
        }
      }
      byLevel.set(level, runs);
      const echoRate = median(runs.echo.map((r) => r.rate));
      const refresherRate = median(runs.refresher.map((r) => r.rate));
      report.add({
        scenario: 1,
        name: `token_get.throughput.inflight_${level}`,
        value: refresherRate,
        baseline: echoRate,
        unit: '/s',
        target: level === 64 ? { on: 'ratio', op: '>=', limit: 0.85 } : undefined,
      });
    }

    const sequential = byLevel.get(1)!;
    report.add({
      scenario: 1,
      name: 'token_get.latency_p50.sequential',
      value: median(sequential.refresher.map((r) => r.p50Ms)),
      baseline: median(sequential.echo.map((r) => r.p50Ms)),
      unit: 'ms',
      lowerIsBetter: true,
      target: { on: 'ratio', op: '<=', limit: 1.15 },
    });
    report.add({
      scenario: 1,
      name: 'token_get.latency_p99.sequential',
      value: median(sequential.refresher.map((r) => r.p99Ms)),
      baseline: median(sequential.echo.map((r) => r.p99Ms)),
      unit: 'ms',
      lowerIsBetter: true,
    });

    // Half the maximum load: the same request rate for both, half of the lower of the two maxima.
    const maxRate = (name: 'echo' | 'refresher') =>
      Math.max(...LEVELS.map((l) => median(byLevel.get(l)![name].map((r) => r.rate))));
    const rate = Math.round(0.5 * Math.min(maxRate('echo'), maxRate('refresher')));
    const paced = { echo: [] as LoadResult[], refresher: [] as LoadResult[] };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [baseline, subject] : [subject, baseline];
      for (const target of order)
        paced[target.name as 'echo' | 'refresher'].push(await openLoop(caller, target, rate, measureMs));
    }
    report.note(
      `token.get: half load = ${rate} req/s (half the lower of the two maxima), open loop, latency from each request's due time`,
    );
    for (const p of ['p50Ms', 'p99Ms'] as const) {
      report.add({
        scenario: 1,
        name: `token_get.latency_${p.slice(0, 3)}.half_load`,
        value: median(paced.refresher.map((r) => r[p])),
        baseline: median(paced.echo.map((r) => r[p])),
        unit: 'ms',
        lowerIsBetter: true,
      });
    }
    report.add({
      scenario: 1,
      name: 'token_get.responder_cpu_per_request.inflight_64',
      value: median(cpu.refresher),
      baseline: median(cpu.echo),
      unit: 'us',
      lowerIsBetter: true,
      note: 'user+system CPU of the responder process (refresher vs echo) per answered request',
    });

    const medianSplit = (list: Record<string, number>[]) =>
      Object.fromEntries(Object.keys(list[0]!).map((k) => [k, Math.round(median(list.map((c) => c[k]!)))]));
    report.note(
      describePerOp('token.get at 64 in flight, echo', medianSplit(split.echo)) + ' (bench = the calling client)',
    );
    report.note(
      describePerOp('token.get at 64 in flight, refresher', medianSplit(split.refresher)) +
        ' (bench = the calling client)',
    );
    const med = (runs: LoadResult[], f: (r: LoadResult) => number) => median(runs.map(f));
    report.series.tokenGet = {
      levels: LEVELS.map((level) => ({
        level,
        echo: med(byLevel.get(level)!.echo, (r) => r.rate),
        refresher: med(byLevel.get(level)!.refresher, (r) => r.rate),
      })),
      latency: {
        sequential: {
          echo: { p50: med(sequential.echo, (r) => r.p50Ms), p99: med(sequential.echo, (r) => r.p99Ms) },
          refresher: { p50: med(sequential.refresher, (r) => r.p50Ms), p99: med(sequential.refresher, (r) => r.p99Ms) },
        },
        halfLoad: {
          rate,
          echo: { p50: med(paced.echo, (r) => r.p50Ms), p99: med(paced.echo, (r) => r.p99Ms) },
          refresher: { p50: med(paced.refresher, (r) => r.p50Ms), p99: med(paced.refresher, (r) => r.p99Ms) },
        },
      },
    };
  } finally {
    await env.stopChild(echo);
  }
}
