import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

let compiledDir: string | undefined;

/** From now on children run from this compiled build (bench/results/build). */
export function useCompiledChildren(dir: string): void {
  compiledDir = dir;
}

/** The repository root: children run with it as cwd so that `--import @swc-node/register/esm-register` resolves. */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Pending {
  resolve: (value: any) => void;
  reject: (error: Error) => void;
}

/**
 * A TypeScript child process (run through SWC like `npm run bench` itself) that answers
 * requests over the IPC channel: `{id, op, args}` in, `{id, result}` or `{id, error}` out.
 * A child that dies unexpectedly fails every pending call, and the bench with it.
 */
export class BenchChild {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exited = false;
  private readonly exitPromise: Promise<void>;
  readonly ready: Promise<any>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    let readyResolve!: (v: any) => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    child.on('message', (message: any) => {
      if (message?.type === 'ready') return readyResolve(message.info ?? {});
      if (message?.type === 'fatal') return readyReject(new Error(`${name}: ${message.error}`));
      const waiter = this.pending.get(message?.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.error) waiter.reject(new Error(`${name}: ${message.error}`));
      else waiter.resolve(message.result);
    });
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = true;
        const error = new Error(`${name} exited (${code ?? signal})`);
        readyReject(error);
        for (const waiter of this.pending.values()) waiter.reject(error);
        this.pending.clear();
        resolve();
      });
    });
  }

  /**
   * Spawns `file` (a .ts file in bench/support/) with the given environment; resolves once
   * it said ready. It runs from the compiled build (see build.ts) once `useCompiledChildren`
   * was called, else, or with `loader: 'swc'`, through @swc-node/register like the bench.
   */
  static async start(
    name: string,
    file: string,
    env: Record<string, string>,
    nodeArgs: string[] = [],
    loader: 'compiled' | 'swc' = compiledDir ? 'compiled' : 'swc',
  ): Promise<BenchChild> {
    const args =
      loader === 'compiled' && compiledDir
        ? [...nodeArgs, join(compiledDir, 'bench/support', file.replace(/\.ts$/, '.js'))]
        : [...nodeArgs, '--import', '@swc-node/register/esm-register', fileURLToPath(new URL(file, import.meta.url))];
    const child = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const handle = new BenchChild(name, child);
    await handle.ready;
    return handle;
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<T = any>(op: string, args: unknown = {}): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, op, args });
    });
  }

  /** Resident set size and peak (VmHWM) from /proc, in bytes. */
  memory(): { rss: number; peak: number } {
    return procMemory(this.pid);
  }

  /** User + system CPU time consumed so far, in milliseconds. */
  cpuMs(): number {
    return procCpuMs(this.pid);
  }

  /** Asks the child to shut down cleanly; kills it if it does not within `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.exited) return;
    this.call('stop').catch(() => undefined);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

export function procMemory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

const CLOCK_TICKS_PER_SECOND = 100;

export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * The child side: registers the handlers, reports ready (with `info`), and exits when
 * the parent goes away, so that a crashed bench leaves nothing running.
 */
export function serveParent(handlers: Record<string, (args: any) => unknown>, onStop: () => Promise<void>): void {
  let stopping = false;
  const stop = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    try {
      await onStop();
    } finally {
      process.exit(code);
    }
  };
  process.on('disconnect', () => void stop(0));
  // Every path of the handler is caught or exits, so the promise it returns cannot reject.
  // eslint-disable-next-line @typescript-eslint/no-misused-promises
  process.on('message', async (message: any) => {
    const { id, op, args } = message ?? {};
    if (op === 'stop') {
      process.send?.({ id, result: true });
      await stop(0);
      return;
    }
    const handler = handlers[op];
    try {
      if (!handler) throw new Error(`unknown op ${op}`);
      const result = await handler(args);
      process.send?.({ id, result });
    } catch (error) {
      process.send?.({ id, error: (error as Error).message ?? String(error) });
    }
  });
}

export function reportReady(info: unknown = {}): void {
  process.send?.({ type: 'ready', info });
}

export function reportFatal(error: unknown): never {
  process.send?.({ type: 'fatal', error: (error as Error)?.stack ?? String(error) });
  process.exit(1);
}
