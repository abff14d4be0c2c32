/**
 * A consumer in another language, working: the Go program in examples/go-consumer, built
 * offline with Debian's Go and its nats.go and nkeys packages (GOPATH mode, no module
 * download), runs under its own NATS user and inbox prefix on a server configured with
 * the permissions `tokenctl authz` generates. It asks token.get, verifies signature
 * scheme 2, follows pushed events with highest-version-wins and tombstones, and refuses
 * a genuine event re-published under another subject. Skipped where `go` is missing;
 * CI installs it.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, headers as natsHeaders, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { adminSubject, encodeJson } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';
import { buildAuthz } from '../apps/tokenctl/src/authz.command.js';
import type { GeneratedUser } from '../apps/tokenctl/src/authz.render.js';
import { credentialsOf, natsEnvOf } from '../apps/tokenctl/test/generated-users.js';

const SOURCE = join(import.meta.dirname, '../examples/go-consumer');
const hasGo = spawnSync('go', ['version'], { stdio: 'ignore' }).status === 0;

/** GOPATH mode over Debian's packaged sources: nothing is downloaded. */
function goEnv(gopath: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOPATH: `${gopath}:/usr/share/gocode`,
    GO111MODULE: 'off',
    GOFLAGS: '',
    GOPROXY: 'off',
    GOCACHE: join(gopath, 'cache'),
  };
}

type Line = Record<string, unknown> & { kind: string };

/** The Go program as a child: commands on stdin, one JSON line per answer on stdout. */
class GoConsumer {
  readonly lines: Line[] = [];
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => this.lines.push(JSON.parse(line) as Line));
  }

  static start(binary: string, env: Record<string, string>): GoConsumer {
    return new GoConsumer(spawn(binary, [], { env: { PATH: process.env.PATH, ...env } }));
  }

  async next(match: (line: Line) => boolean, what: string): Promise<Line> {
    let found: Line | undefined;
    await waitFor(() => (found = this.lines.find(match)) !== undefined, { timeoutMs: 15_000, message: what }).catch(
      (error: Error) => {
        throw new Error(`${error.message}; the consumer wrote ${JSON.stringify(this.lines)}`);
      },
    );
    this.lines.splice(this.lines.indexOf(found!), 1);
    return found!;
  }

  async ask(command: string, match: (line: Line) => boolean, what: string): Promise<Line> {
    this.child.stdin.write(`${command}\n`);
    return this.next(match, what);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.end('quit\n');
    await exited;
  }
}

const fingerprint = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 16);

describe.skipIf(!hasGo)('a Go consumer under its own NATS user', () => {
  let gopath: string;
  let binary: string;
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let users: GeneratedUser[];
  let operator: NatsConnection;
  let refresherPeer: NatsConnection;
  let consumer: GoConsumer | undefined;

  const userOf = (kind: string, service?: string) =>
    users.find(
      (u) =>
        u.user.role.kind === kind &&
        (service === undefined || (u.user.role as { service?: string }).service === service),
    )!;
  const admin = async (op: 'register' | 'refresh' | 'revoke', connection: string, body: object = {}) =>
    (await operator.request(adminSubject(op, 'acme', connection), encodeJson(body), { timeout: 10_000 })).json<any>();

  beforeAll(async () => {
    gopath = mkdtempSync(join(tmpdir(), 'tk-go-'));
    binary = join(gopath, 'go-consumer');
    const build = spawnSync('go', ['build', '-o', binary, '.'], { cwd: SOURCE, env: goEnv(gopath), encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);

    const generated = buildAuthz({ refresher: true, operator: true, consumer: ['acme:scheduler'] });
    users = generated.users;
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config: generated.config }),
      createTestDatabase('tk_go'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, natsEnvOf(userOf('refresher'))),
      sandboxProviders(sandbox),
    );
    const op = userOf('operator');
    operator = await connect({ servers: nats.url, ...credentialsOf(op), inboxPrefix: op.user.inboxPrefix });
    const peer = userOf('refresher');
    refresherPeer = await connect({
      servers: nats.url,
      ...credentialsOf(peer),
      inboxPrefix: `${peer.user.inboxPrefix}_peer`,
    });
  }, 120_000);

  afterAll(async () => {
    await consumer?.stop();
    await Promise.all([operator?.close(), refresherPeer?.close()]);
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
    if (gopath) rmSync(gopath, { recursive: true, force: true });
  });

  it("passes its own unit tests (cache rules, signature scheme 2 and the repository's test vectors)", () => {
    const test = spawnSync('go', ['test', '.'], { cwd: SOURCE, env: goEnv(gopath), encoding: 'utf8' });
    expect(test.status, `${test.stdout}\n${test.stderr}`).toBe(0);
  }, 120_000);

  it('gets a verified token, follows a pushed refresh, refuses a re-published event and a replay, and honours a revoke', async () => {
    const issued = sandbox.issueTokens();
    expect(await admin('register', 'github', { provider: 'sandbox', ...issued, expiresIn: 3600 })).toMatchObject({
      ok: true,
    });
    const svc = userOf('consumer', 'scheduler');
    consumer = GoConsumer.start(binary, {
      ...natsEnvOf(svc),
      NATS_URL: nats.url,
      EVENT_TRUSTED_SIGNERS: refresher.signerPublicKey,
      TOKEN_SCOPES: 'acme.*',
    });
    await consumer.next((l) => l.kind === 'ready', 'the consumer subscribed');

    const first = await consumer.ask('get acme github', (l) => l.kind === 'token', 'token.get answered');
    expect(first).toMatchObject({
      source: 'reply',
      tenant: 'acme',
      connection: 'github',
      version: 1,
      fingerprint: fingerprint(issued.accessToken),
    });

    // A genuine refresh event, captured as the refresher published it.
    const captured = new Promise<Msg>((resolve) => {
      const sub = refresherPeer.subscribe('token.refreshed.acme.github', { max: 1, callback: (_e, m) => resolve(m) });
      void sub;
    });
    await refresherPeer.flush();
    expect(await admin('refresh', 'github')).toMatchObject({ ok: true, credential: { version: 2 } });
    const refreshed = await captured;
    expect(
      await consumer.next((l) => l.kind === 'event' && l.type === 'refreshed', 'the refresh was pushed'),
    ).toMatchObject({ version: 2, applied: true });
    expect(await consumer.ask('get acme github', (l) => l.kind === 'token', 'served')).toMatchObject({
      source: 'cache',
      version: 2,
    });

    // The same bytes and headers under the revoke subject: the signature covers the
    // subject, so the Go reader refuses it and keeps serving version 2.
    const replayHeaders = natsHeaders();
    for (const [key, values] of refreshed.headers!) for (const value of values) replayHeaders.append(key, value);
    refresherPeer.publish('token.revoked.acme.github', refreshed.data, { headers: replayHeaders });
    expect(
      await consumer.next(
        (l) => l.kind === 'refused' && l.subject === 'token.revoked.acme.github',
        'the re-published event was refused',
      ),
    ).toMatchObject({
      what: 'event',
      reason: expect.stringContaining('signature'),
    });
    // An unsigned forgery on the right subject is refused too.
    refresherPeer.publish(
      'token.refreshed.acme.github',
      encodeJson({ ...JSON.parse(refreshed.string()), accessToken: 'forged', version: 99 }),
    );
    expect(
      await consumer.next(
        (l) => l.kind === 'refused' && l.subject === 'token.refreshed.acme.github',
        'the unsigned event was refused',
      ),
    ).toMatchObject({ reason: 'unsigned' });
    expect(await consumer.ask('get acme github', (l) => l.kind === 'token', 'still served')).toMatchObject({
      source: 'cache',
      version: 2,
    });

    expect(await admin('revoke', 'github')).toMatchObject({ ok: true });
    expect(
      await consumer.next((l) => l.kind === 'event' && l.type === 'revoked', 'the revoke was pushed'),
    ).toMatchObject({ version: 3, applied: true });
    // The genuine version-2 event replayed on its own subject after the revoke: signed,
    // recent and on the right subject, and still refused by the tombstone.
    refresherPeer.publish('token.refreshed.acme.github', refreshed.data, { headers: replayHeaders });
    expect(
      await consumer.next((l) => l.kind === 'event' && l.type === 'refreshed', 'the replay was read'),
    ).toMatchObject({ version: 2, applied: false });
    expect(await consumer.ask('get acme github', (l) => l.kind === 'error', 'revoked answered')).toMatchObject({
      code: 'revoked',
    });
    expect(consumer.lines.filter((l) => l.kind === 'token')).toEqual([]);
  }, 90_000);

  it("cannot ask for another tenant's token: the server refuses the request", async () => {
    const svc = userOf('consumer', 'scheduler');
    const other = GoConsumer.start(binary, {
      ...natsEnvOf(svc),
      NATS_URL: nats.url,
      EVENT_TRUSTED_SIGNERS: refresher.signerPublicKey,
      TOKEN_SCOPES: 'acme.*',
    });
    try {
      await other.next((l) => l.kind === 'ready', 'subscribed');
      const answer = await other.ask('get globex github', (l) => l.kind === 'error' || l.kind === 'token', 'an answer');
      expect(answer.kind).toBe('error');
      // The server's own word, not a timeout or a missing responder alone.
      const violation = await other.next(
        (l) => l.kind === 'nats_error' && /publish/i.test(String(l.reason)),
        'the server reported the violation',
      );
      expect(String(violation.reason)).toMatch(/permissions violation for publish to "token\.get\.globex\.github"/i);
    } finally {
      await other.stop();
    }
  }, 60_000);
});
