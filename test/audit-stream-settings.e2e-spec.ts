/**
 * TOKEN_AUDIT's settings belong to the operator. Under the permissions `tokenctl authz`
 * generates, the refresher may create the stream but not update it (an update could shrink
 * its limits to nothing, which is a purge by other means). With a stream that already exists
 * with other settings, the refresher starts, says what differs and what to run, leaves the
 * stream as it is and publishes its audit records into it.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, nanos, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { adminSubject, AUDIT_STREAM, AUDIT_SUBJECT_FILTER, encodeJson } from '@tokenkeeper/contracts';
import {
  createTestDatabase,
  permissionError,
  startNatsServer,
  startSandboxProvider,
  waitFor,
  type NatsServerHandle,
  type SandboxProvider,
  type TestDatabase,
} from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAuditStream } from '../apps/audit/test/audit.harness.js';
import {
  sandboxProviders,
  startTestRefresher,
  testEnv,
  testKeys,
  type TestRefresher,
} from '../apps/refresher/test/refresher.harness.js';
import { buildAuthz } from '../apps/tokenctl/src/authz.command.js';
import { renderServerConfig, type GeneratedUser } from '../apps/tokenctl/src/authz.render.js';
import { allAccessUser, credentialsOf, natsEnvOf } from '../apps/tokenctl/test/generated-users.js';

/** The operator's own JetStream tooling (`nats stream …`), which no generated role is. */
const OPERATOR_TOOLING = allAccessUser('stream-admin');
/** The stream as an operator set it up: other limits than the refresher's defaults. */
const OPERATOR_SETTINGS = { max_age: nanos(3_600_000), max_bytes: 10 * 1024 * 1024, duplicate_window: nanos(60_000) };

describe('the audit stream under the generated permissions: created by the refresher, changed by the operator', () => {
  let nats: NatsServerHandle;
  let db: TestDatabase;
  let sandbox: SandboxProvider;
  let refresher: TestRefresher;
  let users: Map<string, GeneratedUser>;
  const connections: NatsConnection[] = [];

  const connectAs = async (user: GeneratedUser): Promise<NatsConnection> => {
    const nc = await connect({
      servers: nats.url,
      ...credentialsOf(user),
      inboxPrefix: user.user.inboxPrefix,
      noAsyncTraces: true,
    });
    connections.push(nc);
    return nc;
  };

  beforeAll(async () => {
    const generated = buildAuthz({ refresher: true, tenant: ['acme'] });
    users = new Map(generated.users.map((u) => [u.user.name, u]));
    [nats, db, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true, config: renderServerConfig([...generated.users, OPERATOR_TOOLING]) }),
      createTestDatabase('tk_stream_settings'),
      startSandboxProvider({ accessTokenTtlSeconds: 3600 }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await refresher?.close();
    await Promise.all([sandbox?.close(), nats?.stop()]);
    await db?.drop();
  });

  it('refuses STREAM.UPDATE to the refresher; the refresher starts on the existing stream, warns with the command, and publishes into it unchanged', async () => {
    const ops = await jetstreamManager(await connectAs(OPERATOR_TOOLING));
    await ops.streams.add({ name: AUDIT_STREAM, subjects: [AUDIT_SUBJECT_FILTER], ...OPERATOR_SETTINGS });

    const asRefresher = await jetstreamManager(await connectAs(users.get('refresher')!));
    const outcome = await asRefresher.streams.update(AUDIT_STREAM, { max_age: nanos(120_000), max_bytes: 1 }).then(
      () => 'updated',
      (error: unknown) => error,
    );
    const violation = permissionError(outcome);
    expect(violation, String(outcome)).toBeInstanceOf(PermissionViolationError);
    expect(violation!.subject).toBe(`$JS.API.STREAM.UPDATE.${AUDIT_STREAM}`);

    refresher = await startTestRefresher(
      testEnv({ natsUrl: nats.url, databaseUrl: db.url, keys: testKeys() }, natsEnvOf(users.get('refresher')!)),
      sandboxProviders(sandbox),
    );
    const admin = await connectAs(users.get('admin-acme')!);
    const registered = await admin.request(
      adminSubject('register', 'acme', 'github'),
      encodeJson({ provider: 'sandbox', ...sandbox.issueTokens(), expiresIn: 3600 }),
      { timeout: 10_000 },
    );
    expect(registered.json()).toMatchObject({ ok: true });

    const opsConnection = connections[0]!;
    const records = await waitFor(
      async () => {
        const all = await readAuditStream(opsConnection);
        return all.some((r) => r.subject === 'audit.token.registered.acme.github') ? all : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(records.map((r) => r.subject)).toContain('audit.token.registered.acme.github');

    const config = (await ops.streams.info(AUDIT_STREAM)).config;
    expect({ max_age: config.max_age, max_bytes: config.max_bytes, duplicate_window: config.duplicate_window }).toEqual(
      OPERATOR_SETTINGS,
    );
    const warning = refresher.logs
      .text()
      .split('\n')
      .find((line) => line.includes('audit stream settings differ'));
    expect(warning).toBeDefined();
    expect(warning).toContain('max_age (AUDIT_STREAM_MAX_AGE_HOURS): 3600s (configured 2592000s)');
    expect(warning).toContain(
      `nats stream edit ${AUDIT_STREAM} --max-age=2592000s --max-bytes=1073741824 --dupe-window=120s --force`,
    );
  }, 90_000);
});
