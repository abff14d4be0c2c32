import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { encodeJson } from '@tokenkeeper/contracts';
import { startNatsServer, type NatsServerHandle } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedHeaders, type ReplyWithHeaders } from './fixed-headers.js';
import { NatsRpcServer } from './nats-rpc.server.js';

describe('fixedHeaders', () => {
  it('encodes once, to the same bytes nats.js would write, and cannot be changed', () => {
    const entries = { 'Tokenkeeper-Signature': 'c2ln', 'Tokenkeeper-Signer': 'UABC' };
    const fixed = fixedHeaders(entries) as ReturnType<typeof fixedHeaders> & { encode(): Uint8Array };
    const plain = natsHeaders() as ReturnType<typeof natsHeaders> & { encode(): Uint8Array };
    for (const [k, v] of Object.entries(entries)) plain.set(k, v);
    expect(Buffer.from(fixed.encode()).toString()).toBe(Buffer.from(plain.encode()).toString());
    expect(fixed.encode()).toBe(fixed.encode());
    expect(fixed.get('Tokenkeeper-Signer')).toBe('UABC');
    expect(() => fixed.set('Tokenkeeper-Signer', 'UEVIL')).toThrow(/cannot be changed/);
    expect(() => fixed.append('X', 'y')).toThrow(/cannot be changed/);
    expect(() => fixed.delete('Tokenkeeper-Signer')).toThrow(/cannot be changed/);
    expect(fixed.get('Tokenkeeper-Signer')).toBe('UABC');
  });
});

describe('NatsRpcServer: replies with headers', () => {
  let nats: NatsServerHandle;
  let serverConn: NatsConnection;
  let caller: NatsConnection;
  let rpc: NatsRpcServer;
  const reply: ReplyWithHeaders = {
    data: encodeJson({ ok: true, signed: 1 }),
    headers: fixedHeaders({ 'Tokenkeeper-Signer': 'UABC' }),
  };

  beforeAll(async () => {
    nats = await startNatsServer();
    serverConn = await connect({ servers: nats.url });
    caller = await connect({ servers: nats.url });
    rpc = new NatsRpcServer(serverConn, {
      queue: 'test',
      direct: {
        'svc.sync': () => reply,
        'svc.async': async () => reply,
        'svc.bytes': () => encodeJson({ ok: true, plain: 1 }),
      },
    });
    for (const subject of ['svc.sync', 'svc.async', 'svc.bytes'])
      rpc.addHandler(subject, async () => ({ ok: false }), false);
    rpc.addHandler('svc.nest', async () => reply, false);
    await new Promise<void>((resolve) => rpc.listen(() => resolve()));
    await serverConn.flush();
  });

  afterAll(async () => {
    await rpc?.close();
    await Promise.all([serverConn?.close(), caller?.close()]);
    await nats?.stop();
  });

  it('sends the handler’s headers with its bytes, on the direct (sync, async) and Nest paths', async () => {
    for (const subject of ['svc.sync', 'svc.async', 'svc.nest']) {
      const msg = await caller.request(subject, '{}', { timeout: 2_000 });
      expect(Buffer.from(msg.data).equals(Buffer.from(reply.data)), subject).toBe(true);
      expect(msg.headers?.get('Tokenkeeper-Signer'), subject).toBe('UABC');
    }
    // The same reply object answered many times, unchanged.
    for (let i = 0; i < 5; i++)
      expect((await caller.request('svc.sync', '{}', { timeout: 2_000 })).headers?.get('Tokenkeeper-Signer')).toBe(
        'UABC',
      );
    const plain = await caller.request('svc.bytes', '{}', { timeout: 2_000 });
    expect(plain.json()).toEqual({ ok: true, plain: 1 });
    expect(plain.headers).toBeUndefined();
  });
});
