import { createTestDatabase, startNatsServer, startSandboxProvider, type NatsServerHandle, type SandboxProvider } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawCaller, sandboxProviders, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

const SUBJECTS = ['token.get', 'token.register', 'token.refresh', 'token.revoke', 'token.describe', 'token.list'];

describe('refresher: malformed and hostile messages', () => {
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;

  beforeAll(async () => {
    // A 2 MB max_payload lets an oversized request reach the handler instead of being refused by the server.
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ args: ['--max_payload', '2097152'] }).catch(() => startNatsServer()),
      createTestDatabase('tk_hostile'),
      startSandboxProvider(),
    ]);
    refresher = await startTestRefresher(testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }), sandboxProviders(sandbox));
    caller = await RawCaller.connect(nats.url);
    const tokens = sandbox.issueTokens();
    await caller.call('token.register', { tenant: 'acme', connection: 'github', provider: 'sandbox', ...tokens, expiresIn: 3600 });
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  const expectCode = async (subject: string, payload: unknown, code = 'bad_request') => {
    const reply = await caller.call(subject, payload);
    expect(reply, `${subject} ${String(payload).slice(0, 60)}`).toMatchObject({ ok: false, error: { code } });
    expect(typeof reply.error.message).toBe('string');
    return reply;
  };

  it.each(SUBJECTS)('%s: malformed payloads get bad_request', async (subject) => {
    for (const payload of ['', 'not json', '{"tenant":', '[]', '"a string"', '42', 'null', new Uint8Array([0xff, 0xfe, 0x00])]) {
      await expectCode(subject, payload);
    }
  });

  it('rejects names that are not subject tokens', async () => {
    for (const tenant of ['acme.corp', 'acme*', '>', 'a b', '', 'x'.repeat(129), 'ünï', 'a\nb']) {
      await expectCode('token.get', { tenant, connection: 'github' });
      await expectCode('token.register', { tenant, connection: 'github', provider: 'sandbox', accessToken: 'x' });
    }
    await expectCode('token.get', { tenant: 'acme', connection: 'git.hub' });
  });

  it('rejects wrong types and unknown fields in admin calls', async () => {
    await expectCode('token.get', { tenant: 1, connection: 'github' });
    await expectCode('token.get', { tenant: 'acme', connection: 'github', minTtlSeconds: 'soon' });
    await expectCode('token.get', { tenant: 'acme', connection: 'github', rejectedVersion: -1 });
    await expectCode('token.register', { tenant: 'acme', connection: 'x', provider: 'sandbox', accessToken: 'x', isAdmin: true });
    await expectCode('token.register', { tenant: 'acme', connection: 'x', provider: 'sandbox', expiresIn: 10, expiresAt: new Date().toISOString() });
    await expectCode('token.list', { limit: 100000 });
    await expectCode('token.list', { cursor: 'bogus!' });
    await expectCode('token.describe', { tenant: 'acme', connection: 'github', extra: 1 });
    // token.get tolerates unknown fields so that newer clients work with older refreshers.
    expect((await caller.call('token.get', { tenant: 'acme', connection: 'github', traceId: 'abc' })).ok).toBe(true);
  });

  it('refuses oversized payloads and deeply nested JSON', async () => {
    const big = JSON.stringify({ tenant: 'acme', connection: 'github', pad: 'x'.repeat(100 * 1024) });
    await expectCode('token.get', big);
    const nested = '{"tenant":"acme","connection":"github","x":' + '['.repeat(5000) + ']'.repeat(5000) + '}';
    const reply = await caller.call('token.get', nested);
    expect(reply.ok === true || reply.error.code === 'bad_request').toBe(true);
  });

  it('never echoes a secret sent to the wrong field', async () => {
    const planted = 'rt_planted_secret_value_0123456789';
    const reply = await expectCode('token.register', { tenant: 'acme', connection: 'x', provider: 'sandbox', refreshToken: 42, accessToken: { value: planted } });
    expect(JSON.stringify(reply)).not.toContain(planted);
    const unknownField = await expectCode('token.register', { tenant: 'acme', connection: 'x', provider: 'sandbox', [planted]: 'x' });
    expect(JSON.stringify(unknownField)).not.toContain(planted);
  });

  it('keeps serving after a flood of garbage, concurrently with good requests', async () => {
    const garbage = Array.from({ length: 300 }, (_, i) => caller.call(SUBJECTS[i % SUBJECTS.length], i % 2 ? '{' : { tenant: '*' }));
    const good = Array.from({ length: 100 }, () => caller.call('token.get', { tenant: 'acme', connection: 'github' }));
    const [bad, fine] = await Promise.all([Promise.all(garbage), Promise.all(good)]);
    expect(bad.every((r) => r.ok === false && r.error.code === 'bad_request')).toBe(true);
    expect(fine.every((r) => r.ok === true && r.token.version === 1)).toBe(true);
  });
});
