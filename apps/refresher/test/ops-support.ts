import { spawn, type ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { INestApplication } from '@nestjs/common';
import pg from 'pg';
import { freePort } from '@tokenkeeper/testing';

/** Shared pieces of the ops-* tests: HTTP probes, Prometheus text parsing, a refresher child process. */

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface HttpAnswer {
  status: number;
  contentType: string;
  text: string;
  json(): any;
}

export async function httpGet(base: string, path: string, timeoutMs = 5_000): Promise<HttpAnswer> {
  const response = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get('content-type') ?? '',
    text,
    json: () => JSON.parse(text),
  };
}

/** The base URL of an in-process refresher's HTTP server (HTTP_PORT=0 picks a free port). */
export function baseUrlOf(app: INestApplication): string {
  const { port } = app.getHttpServer().address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

/**
 * One sample of the Prometheus text format, by name and exact labels; undefined when the
 * series is absent. `labels` must list every label of the series.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const got = (match[2] ?? '')
      .split(/,(?=[a-zA-Z_]+=")/)
      .filter(Boolean)
      .sort()
      .join(',');
    if (got === wanted) return Number(match[3]);
  }
  return undefined;
}

/** Every metric family named in the exposition (from its # TYPE line). */
export function families(text: string): Set<string> {
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
}

/** Runs SQL as the admin (the `postgres` database), e.g. to make a throwaway database unreachable. */
export async function asAdmin<T = any>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({
    connectionString: process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

/**
 * Cuts a throwaway database off without touching the shared server: new connections are
 * refused and the open ones are terminated. `name` comes from createTestDatabase.
 */
export async function blockDatabase(name: string): Promise<void> {
  await asAdmin(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`);
  await asAdmin(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
    [name],
  );
}

export async function unblockDatabase(name: string): Promise<void> {
  await asAdmin(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`);
}

export interface ChildRefresher {
  readonly child: ChildProcess;
  readonly url: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves when it has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  kill(): void;
}

/**
 * `npm run start:refresher` as a child process, the way a container runs it: main.ts with
 * the given environment (nothing inherited but PATH and HOME).
 */
export async function spawnRefresher(env: Record<string, string>): Promise<ChildRefresher> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', '@swc-node/register/esm-register', 'apps/refresher/src/main.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, HTTP_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  // A test that fails half-way must not leave a refresher running.
  const cleanup = () => child.kill('SIGKILL');
  process.once('exit', cleanup);
  void exited.then(() => process.off('exit', cleanup));
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
