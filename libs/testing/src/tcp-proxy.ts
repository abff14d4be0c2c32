import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP forwarder for outage tests: listens on a free loopback port and forwards to a
 * target (PostgreSQL by default). `pause()` cuts every open connection (RST) and refuses
 * new ones until `resume()`, as a database restart or a network failure looks to a client.
 */
export class TcpProxy {
  readonly port: number;
  private readonly sockets = new Set<Socket>();
  private paused = false;

  private constructor(
    private readonly server: Server,
    private readonly target: { host: string; port: number },
  ) {
    this.port = (server.address() as AddressInfo).port;
    server.on('connection', (client) => this.forward(client));
  }

  static async start(target: { host?: string; port?: number } = {}): Promise<TcpProxy> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new TcpProxy(server, { host: target.host ?? '127.0.0.1', port: target.port ?? 5432 });
  }

  /** `url` with its host and port replaced by this proxy's. */
  rewrite(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Cuts every open connection and refuses new ones. */
  pause(): void {
    this.paused = true;
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.sockets.clear();
  }

  resume(): void {
    this.paused = false;
  }

  get openConnections(): number {
    return this.sockets.size / 2;
  }

  async close(): Promise<void> {
    this.pause();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private forward(client: Socket): void {
    if (this.paused) {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection(this.target);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this.sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  }
}

export function startTcpProxy(target?: { host?: string; port?: number }): Promise<TcpProxy> {
  return TcpProxy.start(target);
}
