import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The public front of the refreshers, as a load balancer is in production: both replicas
 * share one PUBLIC_BASE_URL (this proxy), and the test picks which replica serves the next
 * request (`targetPort`). It records every callback URL the browser brings, and can hold
 * callbacks (answer them itself, not forwarding) so that a test can replay, tamper with or
 * delay them.
 */
export class FrontProxy {
  readonly url: string;
  targetPort = 0;
  holdCallbacks = false;
  /** Every `/oauth/callback` URL seen (absolute, on `url`), newest last. */
  readonly callbacks: string[] = [];

  private constructor(private readonly server: Server) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    server.on('request', (req, res) => this.handle(req, res));
  }

  static async start(): Promise<FrontProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return new FrontProxy(server);
  }

  /** Records the next callback without forwarding it; returns its URL. */
  async holdNext<T>(act: () => Promise<T>): Promise<string> {
    const before = this.callbacks.length;
    this.holdCallbacks = true;
    try {
      await act();
    } finally {
      this.holdCallbacks = false;
    }
    if (this.callbacks.length === before) throw new Error('no callback reached the front proxy');
    return this.callbacks.at(-1)!;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    if (url.pathname === '/oauth/callback') {
      this.callbacks.push(url.toString());
      if (this.holdCallbacks) {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('callback held by the test');
        return;
      }
    }
    // Host kept as the browser sent it: the replica sees its public address.
    const upstream = request(
      { host: '127.0.0.1', port: this.targetPort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.writeHead(502, { 'content-type': 'text/plain' }).end('replica unreachable'));
    req.pipe(upstream);
  }
}

/** The app a user returns to (an allowed `returnUrl` origin). */
export async function startReturnApp(): Promise<{ origin: string; close(): Promise<void> }> {
  const server = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'text/plain' }).end('back at the app'),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** `url` with one query parameter replaced. */
export function withParam(url: string, name: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return u.toString();
}
