import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { Secret } from '@tokenkeeper/common';
import type { ProviderConfig, TokenFailure, TokenResult } from '../../src/providers/provider.types.js';
import { UndiciTokenEndpoint } from '../../src/providers/token-endpoint.client.js';

// Test-only: a real loopback HTTP server, so the undici adapter is exercised end to end.

/** Planted values: tests assert that no failure ever carries them. */
export const REFRESH = 'rt_PLANTED_refresh_9f8e7d6c5b4a';
export const CLIENT_SECRET = 'cs PLANTED/secret~!&=+value';
export const CLIENT_ID = 'client:id é';

export interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  form: URLSearchParams;
  at: number;
}
export type Handler = (req: Received, res: ServerResponse) => void;

export interface TokenServer {
  base: string;
  handler: Handler;
  received: Received[];
  endpoint: UndiciTokenEndpoint;
  provider(over?: Partial<ProviderConfig>): ProviderConfig;
  refresh(over?: Partial<ProviderConfig>, endpoint?: UndiciTokenEndpoint): Promise<TokenResult>;
  /** Answers the next request with a fixed response and returns the failure it causes. */
  respondWith(status: number, body: string, headers?: Record<string, string>): Promise<TokenFailure>;
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

export function failure(result: TokenResult): TokenFailure {
  if (result.ok) throw new Error('expected a failure');
  return result.failure;
}

/** Starts the server for the calling spec file; each test starts with a 200 token answer. */
export function useTokenServer(): TokenServer {
  let server: Server;
  const t: TokenServer = {
    base: '',
    handler: () => {},
    received: [],
    endpoint: undefined as unknown as UndiciTokenEndpoint,
    provider: (over = {}) => ({
      id: 'test',
      preset: 'generic',
      tokenUrl: `${t.base}/token`,
      clientId: CLIENT_ID,
      clientSecret: new Secret(CLIENT_SECRET),
      authMethod: 'client_secret_basic',
      grant: 'refresh_token',
      threshold: 0.8,
      maxConcurrency: 8,
      onDemandCooldownSeconds: 30,
      extraParams: {},
      ...over,
    }),
    refresh: (over = {}, endpoint = t.endpoint) =>
      endpoint.requestToken({ provider: t.provider(over), refreshToken: new Secret(REFRESH) }),
    respondWith: async (status, body, headers = {}) => {
      t.handler = (_req, res) => {
        res.writeHead(status, headers);
        res.end(body);
      };
      return failure(await t.refresh());
    },
  };

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        const r: Received = {
          method: req.method!,
          url: req.url!,
          headers: req.headers,
          body,
          form: new URLSearchParams(body),
          at: Date.now(),
        };
        t.received.push(r);
        t.handler(r, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    t.endpoint = new UndiciTokenEndpoint({ timeoutMs: 2_000, userAgent: 'tk-test' });
  });

  afterAll(async () => {
    await t.endpoint.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    t.received = [];
    t.handler = (_req, res) => json(res, 200, { access_token: 'at-1', token_type: 'bearer', expires_in: 3600 });
  });

  return t;
}
