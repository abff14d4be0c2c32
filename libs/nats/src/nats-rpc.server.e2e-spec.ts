import { connect, createInbox, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { encodeJson } from '@tokenkeeper/contracts';
import { startNatsServer, type NatsServerHandle } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withOwnInbox } from './nats-config.js';
import { drainBounded } from './nats-connection.js';
import { NatsRpcServer, type RpcDropReason } from './nats-rpc.server.js';

describe('NatsRpcServer reply-subject guard', () => {
  let nats: NatsServerHandle;
  let serverConn: NatsConnection;
  let caller: NatsConnection;
  let rpc: NatsRpcServer;
  const drops: RpcDropReason[] = [];
  let handled = 0;

  beforeAll(async () => {
    nats = await startNatsServer();
    serverConn = await connect({ servers: nats.url });
    caller = await connect({ servers: nats.url, inboxPrefix: '_R_caller' });
    rpc = new NatsRpcServer(serverConn, {
      queue: 'test',
      replySubjectPrefixes: ['_R_', '_INBOX'],
      direct: { 'svc.direct': () => encodeJson({ ok: true, via: 'direct', n: ++handled }) },
      onDrop: (reason) => {
        drops.push(reason);
        throw new Error('a broken metric');
      },
    });
    // A direct subject must also be a registered pattern; its Nest handler is then bypassed.
    rpc.addHandler('svc.direct', async () => ({ ok: false, via: 'bypassed' }), false);
    rpc.addHandler('svc.nest', async () => ({ ok: true, via: 'nest', n: ++handled }), false);
    await new Promise<void>((resolve) => rpc.listen(() => resolve()));
    await serverConn.flush();
  });

  afterAll(async () => {
    await rpc?.close();
    await Promise.all([serverConn?.close(), caller?.close()]);
    await nats?.stop();
  });

  it('answers configured prefixes on both paths and drops anything else, even when the drop callback throws', async () => {
    expect((await caller.request('svc.direct', '{}', { timeout: 2_000 })).json()).toMatchObject({
      ok: true,
      via: 'direct',
    });
    expect((await caller.request('svc.nest', '{}', { timeout: 2_000 })).json()).toMatchObject({
      ok: true,
      via: 'nest',
    });
    const seen: string[] = [];
    const sub = caller.subscribe('token.>', { callback: (_e, msg) => void seen.push(msg.subject) });
    await caller.flush();
    const before = handled;
    for (const subject of ['svc.direct', 'svc.nest'])
      caller.publish(subject, '{}', { reply: 'token.refreshed.acme.github' });
    caller.publish('svc.direct', '{}', { reply: 'token.x' });
    await caller.flush();
    await serverConn.flush();
    // The server keeps answering after the callback threw.
    expect((await caller.request('svc.direct', '{}', { timeout: 2_000 })).json()).toMatchObject({ ok: true });
    // A caller on the default inbox (`_INBOX.…`) is answered too.
    const plain = await connect({ servers: nats.url });
    expect((await plain.request('svc.nest', '{}', { timeout: 2_000 })).json()).toMatchObject({ ok: true, via: 'nest' });
    await plain.close();
    expect(createInbox().startsWith('_INBOX.')).toBe(true);
    expect(drops).toEqual(['reply_subject', 'reply_subject', 'reply_subject']);
    expect(handled).toBe(before + 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seen).toEqual([]);
    sub.unsubscribe();
  });

  it("drops replies into the service's own inbox, its default private one included, and answers its callers' inboxes", async () => {
    const own = withOwnInbox({ servers: [nats.url], auth: { kind: 'none' } }).inboxPrefix;
    expect(own).toMatch(/^_INBOX\.[A-Za-z0-9]+$/);
    const conn = await connect({ servers: nats.url, inboxPrefix: own });
    const ownDrops: RpcDropReason[] = [];
    const guarded = new NatsRpcServer(conn, {
      queue: 'own',
      ownInboxPrefix: own,
      onDrop: (reason) => void ownDrops.push(reason),
    });
    guarded.addHandler('svc.own', async () => ({ ok: true }), false);
    await new Promise<void>((resolve) => guarded.listen(() => resolve()));
    await conn.flush();
    const seen: string[] = [];
    const sub = caller.subscribe(`${own}.>`, { callback: (_e, msg) => void seen.push(msg.subject) });
    const exact = caller.subscribe(own, { callback: (_e, msg) => void seen.push(msg.subject) });
    await caller.flush();
    caller.publish('svc.own', '{}', { reply: `${own}.ack.1` });
    caller.publish('svc.own', '{}', { reply: own });
    await caller.flush();
    const plain = await connect({ servers: nats.url });
    expect((await plain.request('svc.own', '{}', { timeout: 2_000 })).json()).toEqual({ ok: true });
    await plain.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seen).toEqual([]);
    expect(ownDrops).toEqual(['own_inbox', 'own_inbox']);
    sub.unsubscribe();
    exact.unsubscribe();
    await guarded.close();
    await conn.close();
  });

  it('refuses an empty prefix list', () => {
    expect(() => new NatsRpcServer(serverConn, { replySubjectPrefixes: [] })).toThrow(/reply subject prefix/);
  });
});

describe('NatsRpcServer subjects and payloads', () => {
  it('subscribes wildcard patterns as they are and hands each handler the concrete subject; an empty body is {}', async () => {
    const nats = await startNatsServer();
    const serverConn = await connect({ servers: nats.url });
    const caller = await connect({ servers: nats.url });
    const rpc = new NatsRpcServer(serverConn, {
      queue: 'test',
      direct: { 'svc.get.*.*': (request, subject) => encodeJson({ via: 'direct', subject, request }) },
    });
    rpc.addHandler('svc.get.*.*', async () => ({ via: 'bypassed' }), false);
    rpc.addHandler(
      'svc.admin.*',
      async (request: unknown, msg: Msg) => ({ via: 'nest', subject: msg.subject, request }),
      false,
    );
    await new Promise<void>((resolve) => rpc.listen(() => resolve()));
    await serverConn.flush();
    try {
      const ask = async (subject: string, body: string) =>
        (await caller.request(subject, body, { timeout: 2_000 })).json();
      expect(await ask('svc.get.acme.github', '')).toEqual({
        via: 'direct',
        subject: 'svc.get.acme.github',
        request: {},
      });
      expect(await ask('svc.get.a.b', '{"x":1}')).toEqual({ via: 'direct', subject: 'svc.get.a.b', request: { x: 1 } });
      expect(await ask('svc.admin.acme', '')).toEqual({ via: 'nest', subject: 'svc.admin.acme', request: {} });
      // Whitespace is not an empty body: it is not JSON.
      expect(await ask('svc.admin.acme', ' ')).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      await expect(caller.request('svc.get.acme', '', { timeout: 300 })).rejects.toThrow();
    } finally {
      await rpc.close();
      await Promise.all([serverConn.close(), caller.close()]);
      await nats.stop();
    }
  });
});

describe('drainBounded', () => {
  it('gives up on a drain that never ends after the bound, and closes the connection', async () => {
    let closed = false;
    const hanging = {
      isClosed: () => closed,
      drain: () => new Promise<void>(() => undefined),
      close: async () => {
        closed = true;
      },
    } as unknown as NatsConnection;
    const started = performance.now();
    expect(await drainBounded(hanging, 200)).toBe(false);
    expect(performance.now() - started).toBeLessThan(1_500);
    expect(closed).toBe(true);
  });

  it('ends a connection whose server is gone', async () => {
    const nats = await startNatsServer();
    const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
    nc.subscribe('x.>');
    await nc.flush();
    await nats.kill();
    const started = performance.now();
    await drainBounded(nc, 1_000);
    expect(performance.now() - started).toBeLessThan(2_500);
    expect(nc.isClosed()).toBe(true);
  });

  it('drains a healthy connection within the bound', async () => {
    const nats = await startNatsServer();
    const nc = await connect({ servers: nats.url });
    nc.subscribe('x.>');
    expect(await drainBounded(nc, 5_000)).toBe(true);
    expect(nc.isClosed()).toBe(true);
    await nats.stop();
  });
});
