import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { sleep } from './wait.js';

export interface NatsServerOptions {
  /** Enables JetStream with a fresh store directory that survives restart(). */
  jetstream?: boolean;
  /** Extra command-line arguments, e.g. ['--user', 'u', '--pass', 'p']. */
  args?: string[];
  /** Default: a free port. */
  port?: number;
  /**
   * nats-server configuration text (e.g. an `authorization { users = [...] }` block),
   * written to a temporary file and passed with `-c`. The harness's own address, port and
   * JetStream flags are command-line flags, which take precedence over the file.
   */
  config?: string;
}

export interface NatsServerHandle {
  readonly url: string;
  readonly port: number;
  /** The JetStream store directory, when JetStream is on. */
  readonly storeDir?: string;
  /** Of the current server process; undefined once it has exited. */
  readonly pid: number | undefined;
  /** SIGTERM (graceful shutdown) and wait for the process to exit. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash, and wait for the process to exit. */
  kill(): Promise<void>;
  /** Starts again on the same port with the same store directory (stopping first if still running). */
  restart(): Promise<void>;
}

const SERVER_BINARY = existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const STDERR_KEPT_BYTES = 16 * 1024;

const liveServers = new Set<ChildProcess>();
const storeDirs = new Set<string>();
let exitHookInstalled = false;

/**
 * On a normal exit of the test process, kill what is left and remove the store
 * directories. Only synchronous work is possible here; crashes are covered by
 * the per-server watchdog instead.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of liveServers) child.kill('SIGKILL');
    for (const dir of storeDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/**
 * A shell that outlives this process by a moment and cleans up after it: it
 * reads the pid of the handle's current server from a pipe, and when the pipe
 * closes, which happens however this process dies (SIGTERM from Vitest's pool,
 * SIGKILL, where no exit handler runs), it kills that server and removes the
 * store directory. It must not keep this process alive, hence the unrefs.
 */
function spawnWatchdog(storeDir: string | undefined): ChildProcess {
  const script = [
    'pid=',
    'while read -r line; do pid=$line; done',
    '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null',
    '[ -n "$1" ] && sleep 0.2 && rm -rf "$1"',
  ].join('\n');
  const watchdog = spawn('/bin/sh', ['-c', script, 'nats-watchdog', storeDir ?? ''], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.unref();
  watchdog.stdin!.on('error', () => undefined);
  (watchdog.stdin as unknown as Socket).unref();
  return watchdog;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** A real nats-server child process on 127.0.0.1, for tests and benchmarks. */
class NatsServerHarness implements NatsServerHandle {
  readonly url: string;
  private child?: ChildProcess;
  private stderr = '';
  private watchdog?: ChildProcess;

  constructor(
    readonly port: number,
    private readonly args: string[],
    readonly storeDir?: string,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }

  get pid(): number | undefined {
    return this.child && !hasExited(this.child) ? this.child.pid : undefined;
  }

  async start(): Promise<void> {
    // Readiness is "the port accepts", so a port someone else holds would look ready at once.
    if (await accepts(this.port)) throw new Error(`nats-server: port ${this.port} on 127.0.0.1 is already in use`);
    this.stderr = '';
    const child = spawn(SERVER_BINARY, this.args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    liveServers.add(child);
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-STDERR_KEPT_BYTES);
    });
    (child.stderr as unknown as Socket).unref();
    child.unref();
    this.watchdog ??= spawnWatchdog(this.storeDir);
    child.once('exit', () => {
      liveServers.delete(child);
      // Forget the pid, so that the watchdog cannot kill a process that reused it.
      this.watchdog?.stdin!.write('\n');
    });
    try {
      await spawned;
    } catch (error) {
      liveServers.delete(child);
      throw new Error(`could not run ${SERVER_BINARY}: ${(error as Error).message}`, { cause: error });
    }
    if (!hasExited(child)) this.watchdog.stdin!.write(`${child.pid}\n`);

    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await accepts(this.port))) {
      if (hasExited(child) || Date.now() > deadline) {
        const why = hasExited(child)
          ? `exited with ${child.exitCode ?? child.signalCode}`
          : `not listening after ${READY_TIMEOUT_MS} ms`;
        if (!hasExited(child)) child.kill('SIGKILL');
        // 'close' comes after the last stderr chunk; 'exit' can come before it.
        await Promise.race([closed, sleep(1_000)]);
        throw new Error(`nats-server on port ${this.port} ${why}; stderr:\n${this.stderr}`);
      }
      await sleep(25);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || hasExited(child)) return;
    child.kill('SIGTERM');
    const killTimer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await waitForExit(child);
    clearTimeout(killTimer);
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || hasExited(child)) return;
    child.kill('SIGKILL');
    await waitForExit(child);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerHandle> {
  installExitHook();
  const port = options.port ?? (await freePort());
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (options.config !== undefined) {
    const configDir = mkdtempSync(join(tmpdir(), 'tk-nats-conf-'));
    storeDirs.add(configDir);
    const configFile = join(configDir, 'nats-server.conf');
    writeFileSync(configFile, options.config, { mode: 0o600 });
    args.unshift('-c', configFile);
  }
  let storeDir: string | undefined;
  if (options.jetstream) {
    storeDir = mkdtempSync(join(tmpdir(), 'tk-nats-'));
    storeDirs.add(storeDir);
    args.push('-js', '-sd', storeDir);
  }
  args.push(...(options.args ?? []));
  const server = new NatsServerHarness(port, args, storeDir);
  await server.start();
  return server;
}
