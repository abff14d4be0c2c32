import {
  createTestDatabase,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
} from '@tokenkeeper/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DELIVERY_MARGIN_MS } from '../src/domain/token-validity.js';
import { callApi, describeCredential, printLogsOnFailure, providersFor, type Key } from './e2e-support.js';
import { RawCaller, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

/**
 * 3-second tokens for 20 credentials, 32 callers in flight for 12 s: every answer is a token
 * that has not expired, is valid for the minTtl asked (capped at half its lifetime), and
 * that the provider's API accepts. Zero errors.
 */
describe('refresher: short-lived tokens under load', () => {
  const TTL_S = 3;
  const CREDENTIALS = 20;
  const IN_FLIGHT = 32;
  const DURATION_MS = 12_000;
  const MIN_TTLS = [0, 1, undefined] as const; // undefined: the default 30 s, capped at half the lifetime
  const DEFAULT_MIN_TTL_S = 30;
  const CAP_MS = (TTL_S * 1000) / 2;
  /**
   * The first 8 credentials are only ever asked with minTtl 0, so the scheduler keeps them
   * fresh, with the delivery margin (a token.get wants a second left whatever minTtl says) as
   * the backstop when the machine stalls it; the next 6 only with minTtl 1; the rest with
   * every minTtl, including the default (which forces on-demand refreshes at half the lifetime).
   */
  const minTtlFor = (credential: number, turn: number) =>
    credential < 8 ? 0 : credential < 14 ? 1 : MIN_TTLS[turn % MIN_TTLS.length];

  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let caller: RawCaller;
  const keys: Key[] = Array.from({ length: CREDENTIALS }, (_, i) => ({ tenant: 'load', connection: `c${i}` }));

  beforeAll(async () => {
    [nats, db, sandbox] = await Promise.all([
      startNatsServer(),
      createTestDatabase('tk_load'),
      startSandboxProvider({ accessTokenTtlSeconds: TTL_S }),
    ]);
    refresher = await startTestRefresher(
      testEnv(
        { natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() },
        {
          REFRESH_MIN_MARGIN_SECONDS: '1',
          // The sandbox, the refresher and 32 callers share one event loop here: on a starved machine a
          // 2 s timeout can fire while the answer sits unread, and a retry after a rotation that did happen
          // is reuse (the family dies). Generous timeouts keep this test about expiry, not about that.
          REFRESH_TIMEOUT_MS: '5000',
          LEASE_SECONDS: '10',
        },
      ),
      // Every minTtl here is to be met by a refresh on demand: no budget (refresh-budgets.e2e-spec.ts covers it).
      providersFor({ sandbox: { sandbox, onDemandCooldownSeconds: 0 } }),
    );
    caller = await RawCaller.connect(nats.url);
  });

  afterEach((context) => printLogsOnFailure(context, refresher));

  afterAll(async () => {
    await caller?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it(`${IN_FLIGHT} callers for ${DURATION_MS / 1000} s: never an expired or too-short token, never an error`, async () => {
    for (const key of keys) {
      const reg = await caller.admin('register', {
        ...key,
        provider: 'sandbox',
        refreshToken: sandbox.issueRefreshToken(),
      });
      expect(reg.ok).toBe(true);
    }
    // Registered without an access token: the first refresh is due at once.
    await waitFor(
      async () => (await Promise.all(keys.map((k) => describeCredential(caller, k)))).every((c) => c.hasAccessToken),
      {
        message: 'first tokens fetched',
      },
    );
    // The first fetch() of a process is slow; not during the measured run.
    expect(await callApi(sandbox, 'at_unknown')).toBe(401);
    const grantsBefore = sandbox.stats.refreshGrants;

    const problems: string[] = [];
    const answered = { total: 0, byMinTtl: new Map<string, number>(), apiChecks: 0, apiLate: 0 };
    const shortest = new Map<string, number>();
    const started = Date.now();
    const deadline = started + DURATION_MS;

    const worker = async (w: number) => {
      const lastVersion = new Map<string, number>();
      for (let i = 0; Date.now() < deadline; i++) {
        const k = (w * 7 + i) % CREDENTIALS;
        const key = keys[k]!;
        const minTtlSeconds = minTtlFor(k, w + i);
        const request = minTtlSeconds === undefined ? key : { ...key, minTtlSeconds };
        const sentAt = Date.now();
        let reply: any;
        try {
          reply = await caller.get(request, 5_000);
        } catch (error) {
          problems.push(`${key.connection}: request failed: ${(error as Error).message}`);
          continue;
        }
        const receivedAt = Date.now();
        answered.total++;
        const label = String(minTtlSeconds ?? 'default');
        answered.byMinTtl.set(label, (answered.byMinTtl.get(label) ?? 0) + 1);
        if (!reply.ok) {
          problems.push(`${key.connection}: ${JSON.stringify(reply.error)}`);
          continue;
        }
        const expiresAt = Date.parse(reply.token.expiresAt);
        if (!(expiresAt > receivedAt))
          problems.push(
            `${key.connection} v${reply.token.version}: expired ${receivedAt - expiresAt} ms before it arrived`,
          );
        // Valid for minTtl (at least the delivery margin) when the refresher looked (at or after
        // sentAt), capped at half the lifetime.
        const required = Math.min(Math.max((minTtlSeconds ?? DEFAULT_MIN_TTL_S) * 1000, DELIVERY_MARGIN_MS), CAP_MS);
        if (expiresAt - sentAt < required) {
          problems.push(
            `${key.connection} v${reply.token.version} minTtl ${label}: ${expiresAt - sentAt} ms left, wanted ${required}`,
          );
        }
        shortest.set(label, Math.min(shortest.get(label) ?? Infinity, expiresAt - receivedAt));
        const id = key.connection;
        if ((lastVersion.get(id) ?? 0) > reply.token.version)
          problems.push(`${id}: version went back from ${lastVersion.get(id)} to ${reply.token.version}`);
        lastVersion.set(id, reply.token.version);
        // Sample the protected API with tokens promised to live at least a second. A 401 is a
        // fault of the token only if it came back before the token's own expiry.
        if (i % 40 === 0 && minTtlSeconds !== 0) {
          const status = await callApi(sandbox, reply.token.accessToken);
          answered.apiChecks++;
          if (status !== 200) {
            if (Date.now() < expiresAt) problems.push(`${id} v${reply.token.version}: API answered ${status}`);
            else answered.apiLate++;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, (_, w) => worker(w)));
    const elapsedS = (Date.now() - started) / 1000;
    const grants = sandbox.stats.refreshGrants - grantsBefore;

    expect(problems.slice(0, 20)).toEqual([]);
    expect(answered.total).toBeGreaterThan(2_000);
    for (const label of ['0', '1', 'default']) expect(answered.byMinTtl.get(label)).toBeGreaterThan(500);
    expect(answered.apiChecks).toBeGreaterThan(20);
    // API calls that only arrived after the token's expiry (a starved machine) prove nothing; they must stay rare.
    expect(answered.apiLate).toBeLessThan(answered.apiChecks / 20);
    for (const left of shortest.values()) expect(left).toBeGreaterThan(0);
    expect(sandbox.stats.apiUnauthorized - 1).toBe(answered.apiLate);

    // Every token was replaced before it expired: at least one refresh per lifetime per credential.
    expect(grants).toBeGreaterThanOrEqual(CREDENTIALS * Math.floor(elapsedS / TTL_S));
    // But the capped default minTtl never turns into a refresh per request: at most about one
    // refresh per half lifetime (the cap) per credential.
    expect(grants).toBeLessThanOrEqual(CREDENTIALS * (Math.ceil(elapsedS / (CAP_MS / 1000 - 0.2)) + 2));
    expect(sandbox.everPresentedTwice()).toEqual([]);
    expect(sandbox.stats.reuseDetected).toBe(0);

    const described = await Promise.all(keys.map((k) => describeCredential(caller, k)));
    for (const c of described) expect(c).toMatchObject({ status: 'active', failures: 0 });
    console.log(
      `expiry under load: ${answered.total} answers in ${elapsedS.toFixed(1)} s, ${grants} refreshes, ${answered.apiChecks} API checks (${answered.apiLate} late), shortest remaining (ms) by minTtl ${JSON.stringify(Object.fromEntries(shortest))}`,
    );
  });
});
