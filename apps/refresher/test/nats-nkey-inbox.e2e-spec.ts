import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nkeys, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { adminSubject, encodeJson, tokenGetSubject } from '@tokenkeeper/contracts';
import { connectNats, natsConfigFrom, natsEnvShape } from '@tokenkeeper/nats';
import {
  createTestDatabase,
  permissionError,
  startNatsServer,
  startSandboxProvider,
  type NatsServerHandle,
  type SandboxProvider,
  waitFor,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { auditEnv, REPO_ROOT, startTestAudit, type TestAudit } from '../../audit/test/audit.harness.js';
import { sandboxProviders, startTestRefresher, testEnv, testKeys, type TestRefresher } from './refresher.harness.js';

const run = promisify(execFile);

/** A user nkey pair: the seed for the app's environment, the public key for the server's config. */
function user(): { seed: string; publicKey: string } {
  const pair = nkeys.createUser();
  return { seed: new TextDecoder().decode(pair.getSeed()), publicKey: pair.getPublicKey() };
}

const list = (subjects: string[]) => `[${subjects.map((s) => JSON.stringify(s)).join(', ')}]`;
const entry = (key: string, pub: string[], sub: string[], responses = false) =>
  `{ nkey: ${key}, permissions: { publish: { allow: ${list(pub)} }, subscribe: { allow: ${list(sub)} }${responses ? ', allow_responses: true' : ''} } }`;

/**
 * NATS_NKEY_SEED and NATS_INBOX_PREFIX: each app authenticates with its own
 * nkey and is allowed only its own inbox, never `_INBOX.>`. The server's permissions prove
 * the prefix is used: a request from a connection on the default `_INBOX` cannot get a reply.
 */
describe('NATS nkey authentication and per-app inbox prefixes', () => {
  const refresherUser = user();
  const auditUser = user();
  const consumerUser = user();
  const operatorUser = user();
  let nats: NatsServerHandle;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let auditDb: Awaited<ReturnType<typeof createTestDatabase>>;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let audit: TestAudit;
  const connections: NatsConnection[] = [];

  const connectAs = async (env: Record<string, string>) => {
    const problems: string[] = [];
    const config = natsConfigFrom(z.object(natsEnvShape).parse({ NATS_URL: nats.url, ...env }), problems);
    expect(problems).toEqual([]);
    const nc = await connectNats(config, 'test', { maxReconnectAttempts: 0, waitOnFirstConnect: false });
    connections.push(nc);
    return nc;
  };

  beforeAll(async () => {
    const config = `authorization { users = [
      ${entry(refresherUser.publicKey, ['token.>', 'audit.token.>', '$JS.API.>'], ['token.>', 'tokenkeeper.admin.>', '_INBOX_refresher.>'], true)}
      ${entry(auditUser.publicKey, ['$JS.API.>', '$JS.ACK.>'], ['audit.query', 'audit.query.>', '_INBOX_audit.>'], true)}
      ${entry(consumerUser.publicKey, ['token.get.acme.>', 'tokenkeeper.admin.register.acme.>'], ['_INBOX_consumer.>'])}
      ${entry(operatorUser.publicKey, ['tokenkeeper.admin.>', 'audit.query', 'audit.query.>'], ['_INBOX_ops.>'])}
    ] }`;
    [nats, db, auditDb, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config }),
      createTestDatabase('tk_nkey'),
      createTestDatabase('tk_nkey_audit'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
    const asRefresher = { NATS_NKEY_SEED: refresherUser.seed, NATS_INBOX_PREFIX: '_INBOX_refresher' };
    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, asRefresher),
      sandboxProviders(sandbox),
    );
    audit = await startTestAudit(
      auditEnv(nats.url, auditDb.url, { NATS_NKEY_SEED: auditUser.seed, NATS_INBOX_PREFIX: '_INBOX_audit' }),
    );
  });

  afterAll(async () => {
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await audit?.close();
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await Promise.all([db?.drop(), auditDb?.drop()]);
  });

  it('serves a consumer on its own inbox; the default inbox is refused by the server', async () => {
    const consumer = await connectAs({ NATS_NKEY_SEED: consumerUser.seed, NATS_INBOX_PREFIX: '_INBOX_consumer' });
    const reg = await consumer.request(
      adminSubject('register', 'acme', 'github'),
      encodeJson({ provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3600 }),
      { timeout: 10_000 },
    );
    expect(reg.json()).toMatchObject({ ok: true });
    const got = await consumer.request(tokenGetSubject('acme', 'github'), encodeJson({}), { timeout: 10_000 });
    expect(got.json()).toMatchObject({ ok: true, token: { tenant: 'acme', connection: 'github', version: 1 } });

    // Same user, default inbox prefix: its reply subscription on _INBOX.> is not allowed.
    const defaultInbox = await connectAs({ NATS_NKEY_SEED: consumerUser.seed });
    // The server's own refusal of the reply subscription, not a timeout (which any lost reply gives).
    const outcome = await defaultInbox
      .request(tokenGetSubject('acme', 'github'), encodeJson({}), { timeout: 5_000 })
      .then(
        () => 'answered',
        (error: unknown) => error,
      );
    const violation = permissionError(outcome);
    expect(violation, String(outcome)).toBeInstanceOf(PermissionViolationError);
    expect(violation!.operation).toBe('subscription');
    expect(violation!.subject).toMatch(/^_INBOX\./);
  });

  it('refuses a connection with an unknown nkey', async () => {
    await expect(connectAs({ NATS_NKEY_SEED: user().seed })).rejects.toThrow(/authori[sz]ation/i);
  });

  it('runs the audit trail and tokenctl under their own nkeys and inboxes', async () => {
    // The refresher published the registration to TOKEN_AUDIT on its inbox; the audit app consumed and acked it on its own.
    await waitFor(() => audit.consumer.stats.stored >= 1, { timeoutMs: 20_000 });
    const env = {
      ...process.env,
      NATS_URL: nats.url,
      NATS_NKEY_SEED: operatorUser.seed,
      NATS_INBOX_PREFIX: '_INBOX_ops',
      NATS_USER: '',
      NATS_PASS: '',
      NATS_TOKEN: '',
      NATS_CREDS: '',
      NO_COLOR: '1',
    };
    const entryPoint = join(REPO_ROOT, 'apps/tokenctl/src/main.ts');
    const cli = (args: string[]) =>
      run(process.execPath, ['--import', '@swc-node/register/esm-register', entryPoint, ...args], {
        cwd: REPO_ROOT,
        env,
        timeout: 90_000,
      });
    const [describeOut, auditOut] = await Promise.all([
      cli(['describe', 'acme', 'github', '--json']),
      cli(['audit', '--tenant', 'acme', '--json']),
    ]);
    expect(JSON.parse(describeOut.stdout)).toMatchObject({
      ok: true,
      credential: { tenant: 'acme', connection: 'github', status: 'active' },
    });
    expect(auditOut.stdout).toContain('"registered"');
    expect(`${describeOut.stderr}${auditOut.stderr}`).not.toContain(operatorUser.seed);
  }, 120_000);
});
