import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RawCaller,
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
  wire,
} from './refresher.harness.js';

const GET = wire.tokenGet('acme', 'github');
/** One subject of each kind the refresher serves; none of the payloads sent to them below is valid. */
const SUBJECTS = [
  GET,
  wire.admin('register', 'acme', 'x'),
  wire.admin('refresh', 'acme', 'github'),
  wire.admin('revoke', 'acme', 'x'),
  wire.admin('describe', 'acme', 'github'),
  wire.list(),
  wire.list('acme'),
];
/** The subjects of an older contract, addressed by payload only: nobody serves them any more. */
const OLD_SUBJECTS = ['token.get', 'token.register', 'token.refresh', 'token.revoke', 'token.describe', 'token.list'];
/**
 * Names NATS delivers as a single subject token (so a `*` subscription receives them) but
 * the name rule refuses. `.`, `*`, `>` and whitespace cannot be sent in a subject token at
 * all; they are tried in payloads instead.
 */
const BAD_SUBJECT_TOKENS = ['ac%me', 'a$b', 'a:b', 'x'.repeat(129), 'ünï', 'a+b', 'a/b'];

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
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }),
      sandboxProviders(sandbox),
    );
    caller = await RawCaller.connect(nats.url);
    const tokens = sandbox.issueTokens();
    expect(
      (
        await caller.admin('register', {
          tenant: 'acme',
          connection: 'github',
          provider: 'sandbox',
          ...tokens,
          expiresIn: 3600,
        })
      ).ok,
    ).toBe(true);
  });

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  const expectCode = async (subject: string, payload: unknown, code = 'bad_request') => {
    const reply = await caller.call(subject, payload);
    expect(
      reply,
      `${subject} ${String(typeof payload === 'object' ? JSON.stringify(payload) : payload).slice(0, 60)}`,
    ).toMatchObject({ ok: false, error: { code } });
    expect(typeof reply.error.message).toBe('string');
    return reply;
  };

  it.each(SUBJECTS)('%s: malformed payloads get bad_request', async (subject) => {
    for (const payload of [
      ' ',
      'not json',
      '{"tenant":',
      '[]',
      '"a string"',
      '42',
      'null',
      new Uint8Array([0xff, 0xfe, 0x00]),
    ]) {
      await expectCode(subject, payload);
    }
  });

  it('takes an empty payload as {}', async () => {
    expect(await caller.call(GET, '')).toMatchObject({
      ok: true,
      token: { tenant: 'acme', connection: 'github', version: 1 },
    });
    expect(await caller.call(wire.admin('describe', 'acme', 'github'), '')).toMatchObject({
      ok: true,
      credential: { tenant: 'acme', connection: 'github' },
    });
    expect(await caller.call(wire.list('acme'), '')).toMatchObject({
      ok: true,
      items: [{ tenant: 'acme', connection: 'github' }],
    });
    // {} is still validated: a registration needs a provider.
    await expectCode(wire.admin('register', 'acme', 'x'), '');
  });

  it('answers bad_request to subject tokens that break the name rule', async () => {
    for (const name of BAD_SUBJECT_TOKENS) {
      await expectCode(wire.tokenGet(name, 'github'), {});
      await expectCode(wire.tokenGet('acme', name), {});
      for (const operation of ['register', 'refresh', 'revoke', 'describe'] as const) {
        await expectCode(
          wire.admin(operation, name, 'github'),
          operation === 'register' ? { provider: 'sandbox', accessToken: 'x' } : {},
        );
        await expectCode(
          wire.admin(operation, 'acme', name),
          operation === 'register' ? { provider: 'sandbox', accessToken: 'x' } : {},
        );
      }
      await expectCode(wire.list(name), {});
    }
    // Nothing was registered under any of them.
    const all = await caller.listAll({});
    expect(all.items.map((c: { tenant: string; connection: string }) => `${c.tenant}/${c.connection}`)).toEqual([
      'acme/github',
    ]);
  });

  it('rejects payload names that are not subject tokens', async () => {
    for (const tenant of ['acme.corp', 'acme*', '>', 'a b', '', 'x'.repeat(129), 'ünï', 'a\nb']) {
      await expectCode(GET, { tenant, connection: 'github' });
      await expectCode(wire.admin('register', 'acme', 'github'), {
        tenant,
        connection: 'github',
        provider: 'sandbox',
        accessToken: 'x',
      });
    }
    await expectCode(GET, { tenant: 'acme', connection: 'git.hub' });
  });

  it('answers bad_request to a payload naming another credential than its subject', async () => {
    for (const other of [
      { tenant: 'beta' },
      { connection: 'gitlab' },
      { tenant: 'beta', connection: 'github' },
      { tenant: 'acme', connection: 'gitlab' },
    ]) {
      const reply = await expectCode(GET, other);
      expect(reply.error.message).toMatch(/differs from the subject/);
      await expectCode(GET, { ...other, minTtlSeconds: 60 });
      await expectCode(wire.admin('register', 'acme', 'github'), {
        ...other,
        provider: 'sandbox',
        accessToken: 'planted-at',
      });
      for (const operation of ['refresh', 'revoke', 'describe'] as const)
        await expectCode(wire.admin(operation, 'acme', 'github'), other);
    }
    await expectCode(wire.list('acme'), { tenant: 'beta' });
    // The same names are accepted when they match, and on the cross-tenant list a tenant is a filter.
    expect((await caller.call(GET, { tenant: 'acme', connection: 'github' })).ok).toBe(true);
    expect(
      (await caller.call(wire.admin('describe', 'acme', 'github'), { tenant: 'acme', connection: 'github' })).ok,
    ).toBe(true);
    expect((await caller.call(wire.list('acme'), { tenant: 'acme' })).items).toHaveLength(1);
    expect(await caller.listAll({ tenant: 'beta' })).toEqual({ ok: true, items: [] });
    // None of the refused calls touched the credential: not revoked, not re-registered, not refreshed.
    expect(await caller.admin('describe', { tenant: 'acme', connection: 'github' })).toMatchObject({
      ok: true,
      credential: { status: 'active', version: 1 },
    });
  });

  it('serves nothing on the old payload-addressed subjects', async () => {
    for (const subject of OLD_SUBJECTS) {
      await expect(
        caller.call(subject, { tenant: 'acme', connection: 'github', provider: 'sandbox', accessToken: 'x' }, 2_000),
        subject,
      ).rejects.toThrow(/no responders/i);
    }
    // Nor on subjects of the wrong shape.
    await expect(caller.call('token.get.acme', {}, 2_000)).rejects.toThrow(/no responders/i);
    await expect(caller.call('token.get.acme.github.extra', {}, 2_000)).rejects.toThrow(/no responders/i);
    await expect(caller.call('tokenkeeper.admin.describe.acme', {}, 2_000)).rejects.toThrow(/no responders/i);
  });

  it('rejects wrong types and unknown fields in admin calls', async () => {
    await expectCode(GET, { tenant: 1 });
    await expectCode(GET, { minTtlSeconds: 'soon' });
    await expectCode(GET, { rejectedVersion: -1 });
    await expectCode(wire.admin('register', 'acme', 'x'), { provider: 'sandbox', accessToken: 'x', isAdmin: true });
    await expectCode(wire.admin('register', 'acme', 'x'), {
      provider: 'sandbox',
      expiresIn: 10,
      expiresAt: new Date().toISOString(),
    });
    await expectCode(wire.list(), { limit: 100000 });
    await expectCode(wire.list(), { cursor: 'bogus!' });
    await expectCode(wire.list('acme'), { connection: 'github' });
    await expectCode(wire.admin('describe', 'acme', 'github'), { extra: 1 });
    // token.get tolerates unknown fields so that newer clients work with older refreshers.
    expect((await caller.get({ tenant: 'acme', connection: 'github', traceId: 'abc' })).ok).toBe(true);
  });

  it('refuses oversized payloads, and deeply nested JSON wherever the payload is typed or strict', async () => {
    const big = JSON.stringify({ pad: 'x'.repeat(100 * 1024) });
    await expectCode(GET, big);
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    // Where a field has a type, or the payload is strict, deep nesting is refused outright.
    await expectCode(GET, `{"minTtlSeconds":${deep}}`);
    await expectCode(wire.admin('register', 'acme', 'x'), `{"provider":"sandbox","accessToken":${deep}}`);
    await expectCode(
      wire.admin('register', 'acme', 'x'),
      `{"provider":"sandbox","accessToken":"at_x","extra":${deep}}`,
    );
    // token.get tolerates unknown fields (newer clients, older refreshers): there it is parsed,
    // ignored and answered, and the refresher goes on serving.
    expect((await caller.call(GET, `{"x":${deep}}`)).ok).toBe(true);
    expect((await caller.get({ tenant: 'acme', connection: 'github' })).ok).toBe(true);
  });

  it('never echoes a secret sent to the wrong field', async () => {
    const planted = 'rt_planted_secret_value_0123456789';
    const register = wire.admin('register', 'acme', 'x');
    const reply = await expectCode(register, {
      provider: 'sandbox',
      refreshToken: 42,
      accessToken: { value: planted },
    });
    expect(JSON.stringify(reply)).not.toContain(planted);
    const unknownField = await expectCode(register, { provider: 'sandbox', [planted]: 'x' });
    expect(JSON.stringify(unknownField)).not.toContain(planted);
    const mismatch = await expectCode(register, { tenant: 'beta', provider: 'sandbox', accessToken: planted });
    expect(JSON.stringify(mismatch)).not.toContain(planted);
  });

  it('keeps serving after a flood of garbage, concurrently with good requests', async () => {
    const garbage = Array.from({ length: 300 }, (_, i) =>
      caller.call(SUBJECTS[i % SUBJECTS.length], i % 2 ? '{' : { tenant: '*' }),
    );
    const badNames = Array.from({ length: 100 }, (_, i) => caller.call(wire.tokenGet(`t%${i}`, 'github'), {}));
    const good = Array.from({ length: 100 }, () => caller.get({ tenant: 'acme', connection: 'github' }));
    const [bad, worse, fine] = await Promise.all([Promise.all(garbage), Promise.all(badNames), Promise.all(good)]);
    expect([...bad, ...worse].every((r) => r.ok === false && r.error.code === 'bad_request')).toBe(true);
    expect(fine.every((r) => r.ok === true && r.token.version === 1)).toBe(true);
  });
});
