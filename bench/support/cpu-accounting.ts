import { existsSync } from 'node:fs';
import type pg from 'pg';
import { procCpuMs } from './children.js';

/**
 * CPU time by process over a phase of the bench: this process, the children, the
 * nats-server, and the PostgreSQL backends serving one database (found through
 * pg_stat_activity; PostgreSQL's shared background processes, such as the WAL writer,
 * serve every database on the machine and are left out). Divided by the operations of
 * the phase, it says what one operation costs the machine, wherever it is spent: on a
 * 2-core box the sum bounds the rate at about 2 s / (CPU per op).
 */
export class CpuAccounting {
  private constructor(
    private readonly pids: Map<string, number[]>,
    private readonly start: Map<string, number>,
    private readonly selfStart: NodeJS.CpuUsage,
    private readonly db?: pg.Pool,
  ) {}

  static async begin(processes: Record<string, number | undefined>, db?: pg.Pool): Promise<CpuAccounting> {
    const pids = new Map<string, number[]>();
    for (const [name, pid] of Object.entries(processes)) if (pid) pids.set(name, [pid]);
    if (db) {
      pids.set('postgres', await backends(db));
      pids.set(SHARED, await sharedProcesses(db));
    }
    return new CpuAccounting(pids, snapshot(pids), process.cpuUsage(), db);
  }

  /**
   * Milliseconds of CPU per process since begin(), this process as `bench`. A backend
   * that connected during the phase counts with all its CPU (its start-up included).
   */
  async end(): Promise<Record<string, number>> {
    const now = snapshot(this.pids);
    const self = process.cpuUsage(this.selfStart);
    const out: Record<string, number> = { bench: (self.user + self.system) / 1000 };
    for (const [name, ms] of now) out[name] = ms - (this.start.get(name) ?? 0);
    if (this.db) {
      const known = new Set(this.pids.get('postgres'));
      const added = (await backends(this.db)).filter((pid) => !known.has(pid));
      out.postgres = (out.postgres ?? 0) + (snapshot(new Map([['new', added]])).get('new') ?? 0);
    }
    return out;
  }
}

/**
 * PostgreSQL's own processes (WAL writer, checkpointer, background writer, autovacuum):
 * they serve every database on the server, so other users of the machine show here too.
 * Reported apart (see splitShared), never in the total: it is where a commit's WAL flush
 * and the vacuuming of updated rows are paid, which is what batching commits saves.
 */
export const SHARED = 'postgres (shared, all databases)';

async function sharedProcesses(db: pg.Pool): Promise<number[]> {
  const { rows } = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE backend_type IN ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher', 'autovacuum worker')`,
  );
  return rows.map((r) => r.pid);
}

/** Takes the shared PostgreSQL figure out of a perOp() record: [the record without it, its µs per op]. */
export function splitShared(costs: Record<string, number>): [Record<string, number>, number] {
  const { [SHARED]: shared = 0, ...rest } = costs;
  rest.total = (rest.total ?? 0) - shared;
  return [rest, shared];
}

async function backends(db: pg.Pool): Promise<number[]> {
  const { rows } = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'`,
  );
  return rows.map((r) => r.pid);
}

function snapshot(pids: Map<string, number[]>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, list] of pids) {
    let total = 0;
    for (const pid of list) if (existsSync(`/proc/${pid}/stat`)) total += procCpuMs(pid);
    out.set(name, total);
  }
  return out;
}

/** `{process: µs per op}` and the total, rounded. */
export function perOp(cpuMs: Record<string, number>, ops: number): Record<string, number> {
  const out: Record<string, number> = {};
  let total = 0;
  for (const [name, ms] of Object.entries(cpuMs)) {
    const us = Math.round((ms * 1000) / Math.max(1, ops));
    out[name] = us;
    total += us;
  }
  out.total = total;
  return out;
}

export function describePerOp(label: string, costs: Record<string, number>): string {
  return `${label}: ${Object.entries(costs)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')} µs CPU per op`;
}
