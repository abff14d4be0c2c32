/**
 * Scenario 9 (info): the Go consumer of examples/go-consumer, built offline in GOPATH mode
 * from Debian's nats.go and nkeys. Sequential `token.get` p50 through it (each reply's
 * scheme-2 signature verified, as the consumer takes tokens) against the same Go program
 * as a bare echo responder answering bytes of the same size. Skipped where `go` is missing.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { EventSigner, tokenGetSubject } from '@tokenkeeper/contracts';
import type { BenchContext } from './support/context.js';
import { REPO_ROOT } from './support/children.js';
import { register, request } from './support/env.js';

interface GoLine {
  kind: string;
  p50Us?: number;
  failed?: number;
}

function goEnv(gopath: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOPATH: `${gopath}:/usr/share/gocode`,
    GO111MODULE: 'off',
    GOFLAGS: '',
    GOCACHE: join(gopath, 'cache'),
  };
}

/** The Go program as a child: a line in, JSON lines out. */
function startGo(
  binary: string,
  env: Record<string, string>,
): { child: ChildProcessWithoutNullStreams; next: () => Promise<GoLine> } {
  const child = spawn(binary, [], { env: { PATH: process.env.PATH, ...env } });
  const lines: GoLine[] = [];
  const waiting: Array<(line: GoLine) => void> = [];
  createInterface({ input: child.stdout }).on('line', (text) => {
    const line = JSON.parse(text) as GoLine;
    if (line.kind === 'nats_error') return;
    const waiter = waiting.shift();
    if (waiter) waiter(line);
    else lines.push(line);
  });
  const next = () => new Promise<GoLine>((resolve) => (lines.length ? resolve(lines.shift()!) : waiting.push(resolve)));
  return { child, next };
}

export async function goConsumerBench(ctx: BenchContext): Promise<void> {
  const { report, env, caller } = ctx;
  if (spawnSync('go', ['version'], { stdio: 'ignore' }).status !== 0) {
    report.note(
      'go consumer: skipped (no `go` on this machine; Debian: golang-go golang-github-nats-io-go-nats-dev golang-github-nats-io-nkeys-dev)',
    );
    return;
  }
  const gopath = mkdtempSync(join(tmpdir(), 'tk-bench-go-'));
  const binary = join(gopath, 'go-consumer');
  const children: ChildProcessWithoutNullStreams[] = [];
  try {
    const build = spawnSync('go', ['build', '-o', binary, '.'], {
      cwd: join(REPO_ROOT, 'examples/go-consumer'),
      env: goEnv(gopath),
      encoding: 'utf8',
    });
    if (build.status !== 0) throw new Error(`go build failed: ${build.stderr}`);
    const key = { tenant: 'gobench', connection: 'c0' };
    await register(caller, key, { provider: 'sandbox', accessToken: `at_gobench_${'x'.repeat(32)}`, expiresIn: 3600 });
    const reply = JSON.stringify(await request(caller, tokenGetSubject(key.tenant, key.connection), {}));
    const common = {
      NATS_URL: env.natsUrl,
      EVENT_TRUSTED_SIGNERS: EventSigner.fromSeed(env.signingSeed).publicKey,
      TOKEN_SCOPES: `${key.tenant}.*`,
    };
    const echo = startGo(binary, { ...common, ECHO_SUBJECT: 'bench.go.echo', ECHO_REPLY: reply });
    children.push(echo.child);
    await echo.next();
    const consumer = startGo(binary, common);
    children.push(consumer.child);
    await consumer.next();
    const n = ctx.options.quick ? 2_000 : 10_000;
    const measure = async (command: string) => {
      consumer.child.stdin.write(`${command}\n`);
      return consumer.next();
    };
    await measure(`bench bench.go.echo 200 raw`);
    await measure(`bench ${tokenGetSubject(key.tenant, key.connection)} 200`);
    const bare = await measure(`bench bench.go.echo ${n} raw`);
    const tokenGet = await measure(`bench ${tokenGetSubject(key.tenant, key.connection)} ${n}`);
    if (tokenGet.failed) report.note(`go consumer: ${tokenGet.failed} token.get answers failed verification`);
    report.add({
      scenario: 9,
      name: 'go_consumer.token_get_p50',
      value: tokenGet.p50Us! / 1000,
      baseline: bare.p50Us! / 1000,
      unit: 'ms',
      lowerIsBetter: true,
      note: 'verified token.get through the Go consumer vs a bare Go echo responder of the same reply size (info)',
    });
  } finally {
    for (const child of children) child.kill('SIGTERM');
    rmSync(gopath, { recursive: true, force: true });
  }
}
