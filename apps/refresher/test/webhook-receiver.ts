import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedDelivery {
  path: string;
  header: string | undefined;
  raw: string;
  body: any;
  /** What this receiver answered. */
  answered: number | 'hang';
  /** The signature checked out under the receiver's secret with the documented recipe. */
  verified: boolean;
}

/** Receiver behaviour: an answer status for every request, `hang` (never answer) or a 302 to /elsewhere. */
export type ReceiverMode = number | 'hang' | 'redirect';

/** The documented check: HMAC-SHA256 over "<t>.<raw body>", hex, compared in constant time. */
export function verifySignature(secret: string, header: string | undefined, raw: string): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((kv) => kv.split('=', 2) as [string, string]));
  if (!parts.t || !parts.v1) return false;
  const expected = createHmac('sha256', secret).update(`${parts.t}.${raw}`).digest('hex');
  return (
    expected.length === parts.v1.length &&
    timingSafeEqual(Buffer.from(expected), Buffer.from(parts.v1)) &&
    /^\d+$/.test(parts.t)
  );
}

/** A real HTTP endpoint on 127.0.0.1 that records every POST it gets. */
export class WebhookReceiver {
  readonly received: ReceivedDelivery[] = [];
  mode: ReceiverMode = 200;
  private readonly hung: ServerResponse[] = [];

  private constructor(
    private readonly server: Server,
    readonly secret: string,
  ) {}

  static async start(secret: string): Promise<WebhookReceiver> {
    const server = createServer();
    const receiver = new WebhookReceiver(server, secret);
    server.on('request', (req, res) => receiver.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  /** Deliveries this receiver accepted (2xx), deduplicated by id, in arrival order. */
  accepted(): any[] {
    const seen = new Set<string>();
    return this.received
      .filter((d) => d.path === '/hook' && typeof d.answered === 'number' && d.answered < 300)
      .map((d) => d.body)
      .filter((b) => !seen.has(b.id) && seen.add(b.id));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const header = req.headers['tokenkeeper-webhook-signature'] as string | undefined;
      let body: unknown = null;
      try {
        body = JSON.parse(raw);
      } catch {
        /* recorded as null */
      }
      const mode = req.url === '/hook' ? this.mode : 200;
      const answered = mode === 'redirect' ? 302 : mode;
      this.received.push({
        path: req.url ?? '',
        header,
        raw,
        body,
        answered,
        verified: verifySignature(this.secret, header, raw),
      });
      if (mode === 'hang') {
        this.hung.push(res);
        return;
      }
      if (mode === 'redirect') res.writeHead(302, { location: '/elsewhere' }).end();
      else res.writeHead(mode, { 'content-type': 'text/plain' }).end('x'.repeat(mode === 200 ? 10 : 100));
    });
  }

  async close(): Promise<void> {
    for (const res of this.hung) res.destroy();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
