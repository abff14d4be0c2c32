import type { NatsConnection } from '@nats-io/transport-node';
import { sleep } from '@tokenkeeper/common';
import { percentile, Samples } from './stats.js';

export interface LoadTarget {
  name: string;
  subject: string;
  payload: Uint8Array;
}

export interface LoadResult {
  completed: number;
  errors: number;
  seconds: number;
  rate: number;
  p50Ms: number;
  p99Ms: number;
}

const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Closed loop: `inFlight` workers, each sending its next request as soon as the last
 * one is answered, for `durationMs`. Every answered request counts; latency is per
 * request. This is how "throughput at N in flight" is measured.
 */
export async function closedLoop(
  nc: NatsConnection,
  target: LoadTarget,
  inFlight: number,
  durationMs: number,
): Promise<LoadResult> {
  const latencies = new Samples(1 << 16);
  let completed = 0;
  let errors = 0;
  const started = performance.now();
  const end = started + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        const reply = await nc.request(target.subject, target.payload, { timeout: REQUEST_TIMEOUT_MS });
        if (reply.data.length === 0) errors++;
        else {
          completed++;
          latencies.push(performance.now() - t0);
        }
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = (performance.now() - started) / 1000;
  const sorted = latencies.sorted();
  return {
    completed,
    errors,
    seconds,
    rate: completed / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
}

/**
 * Open loop at a fixed rate: request i is due at start + i/rate and its latency is
 * counted from that due time, not from when it actually left (so a stalled sender
 * shows up as latency instead of hiding it: no coordinated omission).
 */
export async function openLoop(
  nc: NatsConnection,
  target: LoadTarget,
  ratePerSecond: number,
  durationMs: number,
): Promise<LoadResult> {
  const latencies = new Samples(Math.ceil((ratePerSecond * durationMs) / 1000) + 16);
  const total = Math.floor((ratePerSecond * durationMs) / 1000);
  const intervalMs = 1000 / ratePerSecond;
  let sent = 0;
  let completed = 0;
  let errors = 0;
  const pending: Promise<void>[] = [];
  const started = performance.now();
  const send = (dueAt: number) =>
    nc.request(target.subject, target.payload, { timeout: REQUEST_TIMEOUT_MS }).then(
      () => {
        completed++;
        latencies.push(performance.now() - dueAt);
      },
      () => {
        errors++;
      },
    );
  while (sent < total) {
    const now = performance.now();
    while (sent < total && started + sent * intervalMs <= now) {
      pending.push(send(started + sent * intervalMs));
      sent++;
    }
    // setTimeout(1) rather than a busy loop: the 2 cores are needed by the server side.
    await sleep(1);
  }
  await Promise.all(pending);
  const seconds = (performance.now() - started) / 1000;
  const sorted = latencies.sorted();
  return {
    completed,
    errors,
    seconds,
    rate: completed / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
}
