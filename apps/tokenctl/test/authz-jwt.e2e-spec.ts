/**
 * Onboarding without a reload: a nats-server in operator mode is started once with the
 * fragment `jwtInit` writes; users minted afterwards connect, and the permissions in their
 * JWTs are enforced by the server.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, credsAuthenticator, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { encodeJson, tokenGetSubject } from '@tokenkeeper/contracts';
import { permissionError, startNatsServer, type NatsServerHandle } from '@tokenkeeper/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtInit, jwtMint, SIGNING_SEED_FILE, type MintedUser } from '../src/authz-jwt.command.js';

describe('tokenctl authz, JWT mode', () => {
  let dir: string;
  let nats: NatsServerHandle;
  const connections: NatsConnection[] = [];

  const connectAs = async (user: MintedUser): Promise<NatsConnection> => {
    const nc = await connect({
      servers: nats.url,
      authenticator: credsAuthenticator(readFileSync(user.credsPath)),
      inboxPrefix: user.inboxPrefix,
      noAsyncTraces: true,
    });
    connections.push(nc);
    return nc;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tk-jwt-'));
    const { config } = await jwtInit(dir, [{ kind: 'refresher' }]);
    nats = await startNatsServer({ jetstream: true, config });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(connections.map((nc) => nc.close().catch(() => undefined)));
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes the seeds with mode 600', () => {
    expect(statSync(join(dir, SIGNING_SEED_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'refresher.creds')).mode & 0o777).toBe(0o600);
  });

  it('a consumer of a tenant minted after the server started gets its answers and is refused another tenant', async () => {
    const responder = await connectAs({
      name: 'refresher',
      inboxPrefix: '_INBOX_refresher',
      credsPath: join(dir, 'refresher.creds'),
    });
    responder.subscribe('token.get.>', {
      callback: (_e, msg) => {
        msg.respond(encodeJson({ ok: true, to: msg.subject }));
      },
    });
    await responder.flush();

    const consumer = await jwtMint(dir, { kind: 'consumer', tenant: 'initech', service: 'billing' });
    const nc = await connectAs(consumer);
    const reply = await nc.request(tokenGetSubject('initech', 'github'), encodeJson({}), { timeout: 10_000 });
    expect(reply.json()).toEqual({ ok: true, to: tokenGetSubject('initech', 'github') });

    const outcome = await nc.request(tokenGetSubject('acme', 'github'), encodeJson({}), { timeout: 3_000 }).then(
      () => 'answered',
      (error: unknown) => error,
    );
    const violation = permissionError(outcome);
    expect(violation, String(outcome)).toBeInstanceOf(PermissionViolationError);
    expect(violation!.operation).toBe('publish');
  });
});
