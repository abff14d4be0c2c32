import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { CredentialKey } from '@tokenkeeper/contracts';
import { type NatsServerHandle, startNatsServer } from '@tokenkeeper/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeRefresher, tokenView } from '../test/fake-refresher.fixture.js';
import { TokenClient } from './token.client.js';

interface Seen {
  authorization?: string;
  method?: string;
  body: string;
  contentType?: string;
}

/** A protected API on loopback that accepts exactly the tokens in `accepted`. */
class ProtectedApi {
  readonly accepted = new Set<string>();
  readonly seen: Seen[] = [];
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      void readBody(req).then((body) => {
        const authorization = req.headers.authorization;
        this.seen.push({ authorization, method: req.method, body, contentType: req.headers['content-type'] });
        const token = authorization?.startsWith('Bearer ') ? authorization.slice(7) : '';
        const ok = this.accepted.has(token);
        res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
        res.end(JSON.stringify(ok ? { echo: body } : { error: 'invalid_token' }));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/resource`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const FETCH_TENANTS = ['fetch'];

describe('client.fetch', () => {
  let nats: NatsServerHandle;
  let refresher: FakeRefresher;
  let api: ProtectedApi;
  let client: TokenClient;
  let n = 0;
  let key: CredentialKey;

  beforeAll(async () => {
    nats = await startNatsServer();
    refresher = await FakeRefresher.start(nats.url);
    api = new ProtectedApi();
    await api.start();
    client = new TokenClient({
      servers: nats.url,
      tenants: FETCH_TENANTS,
      trustedSigners: [refresher.signerPublicKey],
    });
    await client.start();
  });

  afterAll(async () => {
    await client?.close();
    await refresher?.close();
    await api?.stop();
    await nats?.stop();
  });

  /** Caches version 1, then lets the API accept only version 2, as if v1 had been revoked at the provider. */
  async function rotateBehindTheClientsBack(): Promise<void> {
    key = { tenant: FETCH_TENANTS[0]!, connection: `c${++n}` };
    const v1 = refresher.set(tokenView(key, 1));
    api.accepted.add(v1.accessToken);
    const first = await client.fetch(api.url, undefined, key);
    expect(first.status).toBe(200);
    await first.body.dump();
    api.accepted.delete(v1.accessToken);
    api.accepted.add(tokenView(key, 2).accessToken);
    api.seen.length = 0;
  }

  beforeEach(rotateBehindTheClientsBack);

  it('sends the bearer token and retries once after a 401 with a replacement', async () => {
    const res = await client.fetch(
      new URL(api.url),
      { method: 'post', headers: { 'Content-Type': 'application/json', Authorization: 'ignored' }, body: '{"a":1}' },
      { ...key, minTtlSeconds: 60 },
    );
    expect(res.status).toBe(200);
    expect(res.ok).toBe(true);
    expect(res.retried).toBe(true);
    expect(res.tokenVersion).toBe(2);
    expect(await res.json()).toEqual({ echo: '{"a":1}' });

    const rejections = refresher.requestsFor(key).filter((r) => r.rejectedVersion !== undefined);
    expect(rejections).toEqual([expect.objectContaining({ rejectedVersion: 1, minTtlSeconds: 60 })]);
    expect(api.seen).toEqual([
      {
        authorization: `Bearer ${tokenView(key, 1).accessToken}`,
        method: 'POST',
        body: '{"a":1}',
        contentType: 'application/json',
      },
      {
        authorization: `Bearer ${tokenView(key, 2).accessToken}`,
        method: 'POST',
        body: '{"a":1}',
        contentType: 'application/json',
      },
    ]);

    // The replacement went into the cache: the next call is one request, no token.get.
    const again = await client.fetch(api.url, {}, key);
    expect(again.status).toBe(200);
    await again.body.dump();
    expect(refresher.requestsFor(key)).toHaveLength(2);
  });

  it('turns a storm of 401s for one version into one token.get', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, () =>
        client.fetch(api.url, { body: new URLSearchParams({ q: 'x' }), method: 'PUT' }, key),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    await Promise.all(responses.map((r) => r.text()));
    expect(refresher.requestsFor(key).filter((r) => r.rejectedVersion === 1)).toHaveLength(1);
    expect(api.seen.at(-1)?.contentType).toBe('application/x-www-form-urlencoded;charset=UTF-8');
  });

  it('does not retry a body that cannot be replayed', async () => {
    const res = await client.fetch(api.url, { method: 'POST', body: Readable.from(['stream', 'ed']) }, key);
    expect(res.status).toBe(401);
    expect(res.retried).toBe(false);
    expect(res.tokenVersion).toBe(1);
    expect(await res.json()).toEqual({ error: 'invalid_token' });
    expect(api.seen).toEqual([expect.objectContaining({ body: 'streamed' })]);
    expect(refresher.requestsFor(key).filter((r) => r.rejectedVersion !== undefined)).toHaveLength(0);
  });

  it('surfaces the refresher verdict when no replacement exists', async () => {
    refresher.failWith(key, 'reauth_required');
    await expect(client.fetch(api.url, {}, key)).rejects.toMatchObject({ code: 'reauth_required' });
    expect(api.seen).toHaveLength(1);
  });

  it("over the refresh budget: the API's 401 as is, and no more reports of that version until retryAfterSeconds", async () => {
    await rotateBehindTheClientsBack();
    refresher.rateLimit(key, 30);
    const first = await client.fetch(api.url, { method: 'POST', body: 'x' }, key);
    expect(first).toMatchObject({ status: 401, retried: false, tokenVersion: 1 });
    expect(await first.json()).toEqual({ error: 'invalid_token' });
    const more = await Promise.all(Array.from({ length: 10 }, () => client.fetch(api.url, {}, key)));
    expect(more.map((r) => r.status)).toEqual(Array(10).fill(401));
    await Promise.all(more.map((r) => r.body.dump()));
    // One report reached the refresher; the others were answered from its rate_limited verdict.
    expect(refresher.requestsFor(key).filter((r) => r.rejectedVersion === 1)).toHaveLength(1);
    await expect(client.rejectToken(key, 1)).rejects.toMatchObject({ code: 'rate_limited', retryAfterSeconds: 30 });
    refresher.rateLimit(key, undefined);
  });
});
