import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { startNatsServer, type NatsServerHandle } from './nats-server.harness.js';
import { waitFor } from './wait.js';

const servers: NatsServerHandle[] = [];

async function start(options?: Parameters<typeof startNatsServer>[0]): Promise<NatsServerHandle> {
  const server = await startNatsServer(options);
  servers.push(server);
  return server;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A zombie (killed, not yet reaped by init) counts as gone. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('startNatsServer', () => {
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.kill()));
  });

  it('starts a server, survives kill and restart on the same port, and clients reconnect', async () => {
    const server = await start();
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(server.storeDir).toBeUndefined();

    const nc = await connect({ servers: server.url, reconnectTimeWait: 50, maxReconnectAttempts: -1 });
    try {
      nc.subscribe('echo', {
        callback: (_err, msg) => {
          msg.respond(msg.data);
        },
      });
      expect((await nc.request('echo', 'hi')).string()).toBe('hi');

      const firstPid = server.pid!;
      await server.kill();
      expect(server.pid).toBeUndefined();
      expect(running(firstPid)).toBe(false);
      expect(await accepts(server.port)).toBe(false);

      await server.restart();
      expect(server.pid).not.toBe(firstPid);
      // The client's subscription is re-sent on reconnect, so the echo answers again.
      await waitFor(() => nc.request('echo', 'again', { timeout: 200 }).then((m) => m.string() === 'again'), {
        timeoutMs: 5_000,
        message: 'client reconnected after restart',
      });
    } finally {
      await nc.close();
    }

    await server.stop();
    await server.stop();
    expect(await accepts(server.port)).toBe(false);
  });

  it('keeps JetStream data across a crash and restart', async () => {
    const server = await start({ jetstream: true });
    expect(server.storeDir && existsSync(server.storeDir)).toBe(true);
    let nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'HARNESS', subjects: ['harness.>'] });
    await jsm.jetstream().publish('harness.one', 'payload');
    await nc.close();

    await server.kill();
    await server.restart();

    nc = await connect({ servers: server.url });
    try {
      const info = await (await jetstreamManager(nc)).streams.info('HARNESS');
      expect(info.state.messages).toBe(1);
    } finally {
      await nc.close();
    }
  });

  it('runs with a configuration text (authorization), also after a restart, with JetStream', async () => {
    const server = await start({
      jetstream: true,
      config:
        'authorization { users = [ { user: "alice", password: "s3cret", permissions: { publish: "ok.>", subscribe: "_INBOX.>" } } ] }',
    });
    await expect(connect({ servers: server.url, reconnect: false })).rejects.toThrow(/authori[sz]ation/i);
    for (let round = 0; round < 2; round++) {
      const nc = await connect({ servers: server.url, user: 'alice', pass: 's3cret', reconnect: false });
      try {
        const denied = new Promise<Error>((resolve) => {
          void (async () => {
            for await (const status of nc.status()) if (status.type === 'error') resolve(status.error as Error);
          })();
        });
        nc.publish('not.allowed', 'x');
        await nc.flush();
        expect(String(await denied)).toMatch(/permissions violation/i);
      } finally {
        await nc.close();
      }
      if (round === 0) await server.restart();
    }
  });

  it('fails clearly, with the server output, when the server cannot start', async () => {
    const taken = await start();
    await expect(startNatsServer({ port: taken.port })).rejects.toThrow(/already in use/);
    await expect(startNatsServer({ args: ['--no-such-flag'] })).rejects.toThrow(
      /exited with \d+; stderr:\n.*no-such-flag/,
    );
  });

  it('kills its servers when the test process exits, even by SIGKILL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-harness-'));
    const harness = fileURLToPath(new URL('./nats-server.harness.ts', import.meta.url));
    const scenario = (ending: string) => {
      const file = join(dir, `${ending}.ts`);
      writeFileSync(
        file,
        `import { startNatsServer } from ${JSON.stringify(harness)};\n` +
          `const server = await startNatsServer({ jetstream: true });\n` +
          `process.stdout.write(JSON.stringify({ pid: server.pid, storeDir: server.storeDir }));\n` +
          (ending === 'sigkill' ? `process.kill(process.pid, 'SIGKILL');\n` : `process.exit(0);\n`),
      );
      return promisify(execFile)(process.execPath, ['--import', '@swc-node/register/esm-register', file], {
        cwd: fileURLToPath(new URL('../../..', import.meta.url)),
      })
        .then(({ stdout }) => stdout)
        .catch((error: { stdout?: string }) => error.stdout ?? '');
    };
    try {
      const [exited, killed] = await Promise.all([scenario('exit'), scenario('sigkill')]);
      const normal = JSON.parse(exited) as { pid: number; storeDir: string };
      const crashed = JSON.parse(killed) as { pid: number; storeDir: string };
      await waitFor(() => !running(normal.pid) && !running(crashed.pid), {
        timeoutMs: 3_000,
        message: 'servers outlived their parent',
      });
      expect(existsSync(normal.storeDir)).toBe(false);
      await waitFor(() => !existsSync(crashed.storeDir), {
        timeoutMs: 3_000,
        message: 'store directory removed by the watchdog',
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
