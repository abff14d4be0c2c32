import { randomBytes } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createLogger, PinoLoggerService } from '@tokenkeeper/common';
import { encodeJson, EventSigner, generateSigningSeed } from '@tokenkeeper/contracts';
import { type AppConfig, loadConfig } from '../src/config/app-config.js';
import { parseProvidersDocument } from '../src/providers/providers-file.loader.js';
import type { ProviderConfig } from '../src/providers/provider.types.js';
import { startRefresher } from '../src/refresher.app.js';
import type { SandboxProvider } from '@tokenkeeper/testing';
import { Writable } from 'node:stream';

export const testKeys = () => `test:${randomBytes(32).toString('base64')}`;

/** Environment for a refresher under test: fast leases and backoff, random HTTP port. */
export function testEnv(
  base: { natsUrl: string; databaseUrl: string; keys: string },
  overrides: Record<string, string> = {},
) {
  return {
    NODE_ENV: 'test',
    NATS_URL: base.natsUrl,
    DATABASE_URL: base.databaseUrl,
    TOKEN_ENCRYPTION_KEYS: base.keys,
    HTTP_PORT: '0',
    LOG_LEVEL: 'warn',
    LEASE_SECONDS: '5',
    // Longer than the lease on purpose: the lease is extended while a request runs, and a
    // sandbox answer slowed by a loaded machine must still be committed.
    REFRESH_TIMEOUT_MS: '8000',
    REFRESH_MIN_MARGIN_SECONDS: '2',
    CLAIM_INTERVAL_MS: '50',
    BACKOFF_BASE_MS: '200',
    BACKOFF_MAX_MS: '1000',
    MISCONFIGURED_RETRY_MS: '2000',
    SHUTDOWN_GRACE_MS: '3000',
    ...overrides,
  };
}

export function sandboxProviders(
  sandbox: SandboxProvider,
  extra: Record<string, unknown> = {},
): Map<string, ProviderConfig> {
  const doc = {
    providers: {
      sandbox: sandbox.providerSettings(extra),
      'sandbox-cc': sandbox.providerSettings({
        revocationUrl: undefined,
        authMethod: 'client_secret_post',
        grant: 'client_credentials',
        tenants: ['svc', 'acme'],
      }),
    },
  };
  return parseProvidersDocument(JSON.stringify(doc), 'json', {});
}

/** Captures every log line, so that tests can search them for planted secrets. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(chunk.toString('utf8'));
    done();
  }
  text(): string {
    return this.lines.join('');
  }
}

export interface TestRefresher {
  app: INestApplication;
  config: AppConfig;
  logs: LogCapture;
  /** The `U…` key this replica signs token replies and events with. */
  signerPublicKey: string;
  close(): Promise<void>;
}

/**
 * One signing key per test file (each file gets its own module instance), so that the
 * replicas a test starts trust each other's events as production replicas sharing
 * EVENT_SIGNING_KEY do. A test that sets EVENT_SIGNING_KEY itself (even to '', for the
 * ephemeral test key) keeps it.
 */
export const FILE_SIGNING_SEED = generateSigningSeed();

export async function startTestRefresher(
  env: Record<string, string>,
  providers: Map<string, ProviderConfig>,
): Promise<TestRefresher> {
  const config = loadConfig('EVENT_SIGNING_KEY' in env ? env : { ...env, EVENT_SIGNING_KEY: FILE_SIGNING_SEED });
  const logs = new LogCapture();
  const logger = new PinoLoggerService(
    createLogger({ level: env.LOG_LEVEL ?? 'warn', name: 'refresher', destination: logs }),
  );
  const app = await startRefresher({ config, logger, providers });
  return { app, config, logs, signerPublicKey: app.get(EventSigner).publicKey, close: () => app.close() };
}

/** A request whose payload may name its credential: helpers move the names into the subject. */
export interface Addressed {
  tenant: string;
  connection: string;
}
/** A request that may name a tenant (list, audit query). */
export interface TenantScoped {
  tenant?: string;
}
export type AdminOperation = 'register' | 'refresh' | 'revoke' | 'describe' | 'connect';

/**
 * A raw nats.js caller, as any service in any language would be. Besides `call` (any
 * subject, any body), helpers speak the wire contract: the credential is named by the subject and
 * left out of the payload, exactly as a client sends it. Subjects are built without
 * validation, so hostile tests can address names the contract refuses.
 */
export class RawCaller {
  private constructor(readonly nc: NatsConnection) {}

  static async connect(url: string): Promise<RawCaller> {
    return new RawCaller(
      await connect({ servers: url, noAsyncTraces: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 }),
    );
  }

  async call<T = any>(subject: string, body: unknown, timeout = 10_000): Promise<T> {
    const payload = typeof body === 'string' || body instanceof Uint8Array ? body : encodeJson(body);
    const msg = await this.nc.request(subject, payload, { timeout });
    return msg.json<T>();
  }

  /** `token.get.<tenant>.<connection>` with the rest of `request` as payload (`{}` when nothing is left). */
  get<R extends Addressed>(request: R, timeout?: number): Promise<any> {
    const { tenant, connection, ...payload } = request;
    return this.call(wire.tokenGet(tenant, connection), payload, timeout);
  }

  /** `tokenkeeper.admin.<op>.<tenant>.<connection>` with the rest of `request` as payload. */
  admin<R extends Addressed>(operation: AdminOperation, request: R, timeout?: number): Promise<any> {
    const { tenant, connection, ...payload } = request;
    return this.call(wire.admin(operation, tenant, connection), payload, timeout);
  }

  /** `tokenkeeper.admin.list.<tenant>` when `request` names a tenant (payload: the rest), else the cross-tenant `tokenkeeper.admin.list`. */
  list<R extends TenantScoped>(request: R = {} as R, timeout?: number): Promise<any> {
    const { tenant, ...payload } = request;
    return this.call(wire.list(tenant), payload, timeout);
  }

  /** The cross-tenant `tokenkeeper.admin.list`, `request` sent as is (a `tenant` in it filters). */
  listAll(request: object = {}, timeout?: number): Promise<any> {
    return this.call(wire.list(), request, timeout);
  }

  /** `audit.query.<tenant>` when `request` names a tenant (payload: the rest), else the cross-tenant `audit.query`. */
  auditQuery<R extends TenantScoped>(request: R = {} as R, timeout?: number): Promise<any> {
    const { tenant, ...payload } = request;
    return this.call(wire.auditQuery(tenant), payload, timeout);
  }

  close(): Promise<void> {
    return this.nc.close();
  }
}

/** The wire contract subjects, unvalidated (tests send names the contract refuses on purpose). */
export const wire = {
  tokenGet: (tenant: string, connection: string) => `token.get.${tenant}.${connection}`,
  admin: (operation: AdminOperation, tenant: string, connection: string) =>
    `tokenkeeper.admin.${operation}.${tenant}.${connection}`,
  list: (tenant?: string) => (tenant === undefined ? 'tokenkeeper.admin.list' : `tokenkeeper.admin.list.${tenant}`),
  auditQuery: (tenant?: string) => (tenant === undefined ? 'audit.query' : `audit.query.${tenant}`),
};
