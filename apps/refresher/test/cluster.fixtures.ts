import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { parseKeySpec, TokenCipher } from '../src/crypto/token-cipher.js';
import { CredentialMapper } from '../src/persistence/credential.mapper.js';
import { CredentialRepository } from '../src/persistence/credential.repository.js';
import { ENTITIES, MIGRATIONS } from '../src/refresher.module.js';

/**
 * Shared pieces of the multi-replica tests (replicas, crash takeover, fencing, NATS
 * restart): a CredentialRepository outside Nest, a raw SQL view of the credentials
 * table, and a recorder in front of the sandbox token endpoint.
 */

export interface StandaloneRepository {
  repository: CredentialRepository;
  dataSource: DataSource;
  close(): Promise<void>;
}

/**
 * The refresher's own repository over its own pool, with the migrations applied: what a
 * second replica's persistence layer is, without the rest of the app.
 */
export async function openRepository(databaseUrl: string, keys: string): Promise<StandaloneRepository> {
  const dataSource = new DataSource({
    type: 'postgres',
    url: databaseUrl,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    synchronize: false,
    poolSize: 4,
  });
  await dataSource.initialize();
  await dataSource.runMigrations();
  const repository = new CredentialRepository(dataSource, new CredentialMapper(new TokenCipher(parseKeySpec(keys))));
  return { repository, dataSource, close: () => dataSource.destroy() };
}

/** One credentials row as the tests look at it (no secrets decrypted). */
export interface RowState {
  tenant: string;
  connection: string;
  status: string;
  version: number;
  lease_owner: string | null;
  lease_until: Date | null;
  expires_at: Date | null;
  next_refresh_at: Date | null;
  /** Whether the lease is still running by the database clock. */
  lease_live: boolean;
}

/** Plain SQL access for assertions, independent of the code under test. */
export class Sql {
  private constructor(private readonly pool: pg.Pool) {}

  static open(databaseUrl: string): Sql {
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 3 });
    // pool.end() resolves before its clients have finished closing, so the database's drop
    // (pg_terminate_backend) can reach one of them: pg-pool reports that as a pool error,
    // which unhandled would crash the test run after the test had passed.
    pool.on('error', () => undefined);
    return new Sql(pool);
  }

  async query<T = any>(text: string, params: unknown[] = []): Promise<T[]> {
    return (await this.pool.query(text, params)).rows as T[];
  }

  rows(tenant?: string): Promise<RowState[]> {
    return this.query<RowState>(
      `SELECT tenant, connection, status, version, lease_owner, lease_until, expires_at, next_refresh_at,
              (lease_until IS NOT NULL AND lease_until > now()) AS lease_live
       FROM credentials WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, connection`,
      [tenant ?? null],
    );
  }

  /** Audit records of one type per replica, from the outbox (written in the change's transaction). */
  async auditCountsByReplica(type: string, tenant?: string): Promise<Record<string, number>> {
    const rows = await this.query<{ replica: string; n: string }>(
      `SELECT payload->>'replica' AS replica, count(*) AS n FROM outbox
       WHERE type = $1 AND ($2::text IS NULL OR tenant = $2) GROUP BY 1`,
      [type, tenant ?? null],
    );
    return Object.fromEntries(rows.map((r) => [r.replica, Number(r.n)]));
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

export interface RecordedExchange {
  /** The refresh_token form parameter, if any. */
  presented?: string;
  status: number;
  /** The refresh_token of a successful answer, if any. */
  issued?: string;
}

/**
 * A transparent HTTP relay in front of the sandbox token endpoint that remembers which
 * refresh token each request presented and which one each answer issued, so that a test
 * can check every refresh token of a rotation chain with `sandbox.presentations()`.
 * It changes nothing: method, auth header, content type, body, status and body pass through.
 */
export class TokenEndpointRecorder {
  readonly exchanges: RecordedExchange[] = [];

  private constructor(
    private readonly server: Server,
    private readonly target: string,
  ) {
    server.on('request', (req, res) => {
      this.relay(req)
        .then(({ status, contentType, body }) => {
          res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
          res.end(body);
        })
        .catch(() => res.destroy());
    });
  }

  static async start(targetUrl: string): Promise<TokenEndpointRecorder> {
    const server = createServer({ keepAliveTimeout: 60_000 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new TokenEndpointRecorder(server, targetUrl);
  }

  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/oauth/token`;
  }

  /** Every refresh token an answer handed out. */
  issued(): string[] {
    return this.exchanges.flatMap((e) => (e.issued ? [e.issued] : []));
  }

  /** Every refresh token presented, in order of arrival at the provider. */
  presented(): string[] {
    return this.exchanges.flatMap((e) => (e.presented ? [e.presented] : []));
  }

  async close(): Promise<void> {
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closing;
  }

  private async relay(req: IncomingMessage): Promise<{ status: number; contentType: string; body: string }> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString('utf8');
    const headers: Record<string, string> = {};
    for (const name of ['authorization', 'content-type', 'accept']) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const exchange: RecordedExchange = {
      presented: new URLSearchParams(body).get('refresh_token') ?? undefined,
      status: 0,
    };
    this.exchanges.push(exchange);
    const response = await fetch(this.target, { method: req.method, headers, body });
    const text = await response.text();
    exchange.status = response.status;
    if (response.ok) {
      try {
        const issued = (JSON.parse(text) as { refresh_token?: unknown }).refresh_token;
        if (typeof issued === 'string' && issued !== '') exchange.issued = issued;
      } catch {
        // not JSON: nothing issued
      }
    }
    return {
      status: response.status,
      contentType: response.headers.get('content-type') ?? 'application/json',
      body: text,
    };
  }
}

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const KEPT_OUTPUT_BYTES = 64 * 1024;

/** A refresher running as its own process, exactly as `npm run start:refresher` runs it. */
export class RefresherProcess {
  private output = '';
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    const keep = (chunk: string) => {
      this.output = (this.output + chunk).slice(-KEPT_OUTPUT_BYTES);
    };
    child.stdout!.setEncoding('utf8').on('data', keep);
    child.stderr!.setEncoding('utf8').on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** Starts main.ts with `env` on top of this process's environment (log level info) and waits for "refresher started". */
  static async start(env: Record<string, string>, timeoutMs = 30_000): Promise<RefresherProcess> {
    const child = spawn(
      process.execPath,
      ['--import', '@swc-node/register/esm-register', 'apps/refresher/src/main.ts'],
      {
        cwd: REPO_ROOT,
        // "refresher started" is logged at info.
        env: { ...process.env, ...env, LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const proc = new RefresherProcess(child);
    const deadline = Date.now() + timeoutMs;
    while (!proc.output.includes('"msg":"refresher started"')) {
      if (!proc.alive || Date.now() > deadline) {
        await proc.kill();
        throw new Error(
          `refresher process did not start (exit ${child.exitCode ?? child.signalCode}); output:\n${proc.output}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return proc;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get logs(): string {
    return this.output;
  }

  /** SIGKILL, as a crash: no shutdown hook runs, leases stay where they are. Waits for the exit. */
  async kill(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await this.exited;
  }

  get signal(): NodeJS.Signals | null {
    return this.child.signalCode;
  }
}
