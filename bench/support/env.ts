import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { adminSubject, type CredentialKey, encodeJson, generateSigningSeed } from '@tokenkeeper/contracts';
import { createTestDatabase, startNatsServer, type NatsServerHandle, type TestDatabase } from '@tokenkeeper/testing';
import { DataSource } from 'typeorm';
import { parseKeySpec, TokenCipher } from '../../apps/refresher/src/crypto/token-cipher.js';
import { CredentialMapper } from '../../apps/refresher/src/persistence/credential.mapper.js';
import { CredentialRepository } from '../../apps/refresher/src/persistence/credential.repository.js';
import { ENTITIES, MIGRATIONS } from '../../apps/refresher/src/refresher.module.js';
import { BenchChild } from './children.js';

export interface SandboxInfo {
  url: string;
  tokenUrl: string;
  revocationUrl: string;
  apiUrl: string;
}

/** A raw nats.js caller, as any service in any language would be; the same options for every scenario. */
export function connectCaller(url: string, name: string): Promise<NatsConnection> {
  return connect({ servers: url, noAsyncTraces: true, name, maxReconnectAttempts: -1 });
}

export async function request<T = any>(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  timeout = 10_000,
): Promise<T> {
  const msg = await nc.request(subject, encodeJson(body), { timeout });
  return msg.json<T>();
}

/** `tokenkeeper.admin.register.<tenant>.<connection>`: the names in the subject, the rest as payload. */
export async function register<T = any>(
  nc: NatsConnection,
  key: CredentialKey,
  body: Record<string, unknown>,
): Promise<T> {
  return request<T>(nc, adminSubject('register', key.tenant, key.connection), body);
}

/** The refresher's providers document for the bench: the sandbox, with `maxConcurrency` token requests in flight. */
export function providersDocument(sandbox: SandboxInfo, maxConcurrency: number): string {
  return JSON.stringify({
    providers: {
      sandbox: {
        tokenUrl: sandbox.tokenUrl,
        revocationUrl: sandbox.revocationUrl,
        clientId: 'sandbox-client',
        clientSecret: 'sandbox-secret',
        authMethod: 'client_secret_basic',
        grant: 'refresh_token',
        maxConcurrency,
      },
    },
  });
}

/** Everything the scenarios share: one nats-server (JetStream on), the sandbox provider, one encryption key. */
export class BenchEnv {
  readonly keys = `bench:${randomBytes(32).toString('base64')}`;
  readonly cipher = new TokenCipher(parseKeySpec(this.keys));
  /** Shared by every refresher child, as replicas share EVENT_SIGNING_KEY in production. */
  readonly signingSeed = generateSigningSeed();
  private readonly databases: TestDatabase[] = [];
  private readonly children = new Set<BenchChild>();
  private nats?: NatsServerHandle;
  sandbox!: BenchChild;
  sandboxInfo!: SandboxInfo;

  get natsUrl(): string {
    return this.nats!.url;
  }

  get natsPid(): number | undefined {
    return this.nats?.pid;
  }

  async start(): Promise<void> {
    const [nats, sandbox] = await Promise.all([
      startNatsServer({ jetstream: true }),
      BenchChild.start('sandbox', './sandbox-child.ts', { BENCH_SANDBOX_TTL_SECONDS: '3600' }),
    ]);
    this.nats = nats;
    this.sandbox = sandbox;
    this.children.add(sandbox);
    this.sandboxInfo = await sandbox.ready;
  }

  async createDatabase(prefix: string): Promise<TestDatabase> {
    const db = await createTestDatabase(prefix);
    this.databases.push(db);
    return db;
  }

  /** Applies the refresher's migrations and returns a repository on the database, for bulk loads and claim timing. */
  async openRepository(
    url: string,
  ): Promise<{ dataSource: DataSource; repository: CredentialRepository; mapper: CredentialMapper }> {
    const dataSource = new DataSource({
      type: 'postgres',
      url,
      entities: ENTITIES,
      migrations: MIGRATIONS,
      migrationsRun: false,
      synchronize: false,
      poolSize: 4,
      extra: { application_name: 'tokenkeeper-bench' },
    });
    await dataSource.initialize();
    await dataSource.runMigrations({ transaction: 'each' });
    const mapper = new CredentialMapper(this.cipher);
    return { dataSource, repository: new CredentialRepository(dataSource, mapper), mapper };
  }

  /**
   * A refresher in a child process on `databaseUrl`. Defaults are the production ones
   * (claim interval, batch, in-flight limits); `overrides` are refresher env variables.
   */
  async startRefresher(
    databaseUrl: string,
    overrides: Record<string, string> = {},
    nodeArgs: string[] = [],
    loader?: 'compiled' | 'swc',
  ): Promise<BenchChild> {
    const child = await BenchChild.start(
      'refresher',
      './refresher-child.ts',
      {
        NODE_ENV: 'production',
        NATS_URL: this.natsUrl,
        DATABASE_URL: databaseUrl,
        TOKEN_ENCRYPTION_KEYS: this.keys,
        EVENT_SIGNING_KEY: this.signingSeed,
        HTTP_PORT: '0',
        LOG_LEVEL: 'warn',
        REPLICA_ID: `bench-${randomBytes(3).toString('hex')}`,
        BENCH_PROVIDERS: providersDocument(this.sandboxInfo, Number(overrides.BENCH_PROVIDER_CONCURRENCY ?? 8)),
        ...overrides,
      },
      nodeArgs,
      loader,
    );
    this.children.add(child);
    return child;
  }

  async startEcho(replyBytes: number): Promise<BenchChild> {
    const child = await BenchChild.start('echo', './echo-child.ts', {
      BENCH_NATS_URL: this.natsUrl,
      BENCH_ECHO_SUBJECT: 'bench.echo',
      BENCH_ECHO_REPLY_BYTES: String(replyBytes),
    });
    this.children.add(child);
    return child;
  }

  async stopChild(child: BenchChild): Promise<void> {
    await child.stop();
    this.children.delete(child);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.children].map((c) => c.stop()));
    await this.nats?.stop().catch(() => undefined);
    await Promise.allSettled(this.databases.map((d) => d.drop()));
  }
}
