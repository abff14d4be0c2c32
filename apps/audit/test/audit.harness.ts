import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { INestMicroservice } from '@nestjs/common';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { createLogger, PinoLoggerService } from '@tokenkeeper/common';
import { AUDIT_STREAM } from '@tokenkeeper/contracts';
import { waitFor, type SandboxProvider } from '@tokenkeeper/testing';
import pg from 'pg';
import { LogCapture } from '../../refresher/test/refresher.harness.js';
import { startAudit } from '../src/audit.app.js';
import { AuditConsumer } from '../src/consumer/audit-consumer.service.js';
import { type AuditConfig, loadAuditConfig } from '../src/config/audit-config.js';

export const REPO_ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

/** Environment of an audit app under test: fast redelivery and retries. */
export function auditEnv(
  natsUrl: string,
  databaseUrl: string,
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    NODE_ENV: 'test',
    NATS_URL: natsUrl,
    AUDIT_DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'warn',
    AUDIT_ACK_WAIT_SECONDS: '3',
    AUDIT_RETRY_MAX_MS: '1000',
    SHUTDOWN_GRACE_MS: '3000',
    // A free port each: test files run side by side.
    AUDIT_MONITORING_PORT: '0',
    ...overrides,
  };
}

export interface TestAudit {
  app: INestMicroservice;
  config: AuditConfig;
  logs: LogCapture;
  consumer: AuditConsumer;
  close(): Promise<void>;
}

/** The audit app in this process, logging into memory. */
export async function startTestAudit(env: Record<string, string>): Promise<TestAudit> {
  const config = loadAuditConfig(env);
  const logs = new LogCapture();
  const logger = new PinoLoggerService(
    createLogger({ level: env.LOG_LEVEL ?? 'warn', name: 'audit', destination: logs }),
  );
  const app = await startAudit({ config, logger });
  return { app, config, logs, consumer: app.get(AuditConsumer), close: () => app.close() };
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * An app run as its own process (`node --import @swc-node/register/esm-register <entry>`),
 * as `npm run start:*` does, so that it can be killed with SIGKILL at any instant.
 */
export class ChildApp {
  private child?: ChildProcess;
  private output = '';
  private exited?: Promise<void>;
  starts = 0;

  constructor(
    private readonly entry: string,
    private readonly env: Record<string, string>,
    private readonly readyLine: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  /** Everything the process wrote, across restarts. */
  get log(): string {
    return this.output;
  }

  async start(timeoutMs = 30_000): Promise<void> {
    const mark = this.output.length;
    const child = spawn(process.execPath, ['--import', '@swc-node/register/esm-register', this.entry], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.starts++;
    children.add(child);
    const collect = (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    this.exited = new Promise((done) =>
      child.once('exit', () => {
        children.delete(child);
        done();
      }),
    );
    await waitFor(
      () => {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`${this.entry} exited during start:\n${this.output.slice(mark, mark + 4_000)}`);
        }
        return this.output.indexOf(this.readyLine, mark) >= 0;
      },
      { timeoutMs, intervalMs: 25, message: `${this.entry} to start` },
    ).catch((error: Error) => {
      // A start that failed for a reason other than the process exiting: say what it printed.
      if (!error.message.includes('exited during start')) error.message += `\n${this.output.slice(mark, mark + 4_000)}`;
      throw error;
    });
  }

  /** SIGKILL: no shutdown hook runs, sockets close as the kernel reaps the process. */
  async kill(): Promise<void> {
    if (!this.pid) return;
    this.child!.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM (graceful shutdown) and wait for the exit. */
  async stop(timeoutMs = 20_000): Promise<void> {
    if (!this.pid) return;
    const child = this.child!;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** A providers file for the refresher process, pointing at the sandbox; the client secret comes from the environment. */
export function writeProvidersFile(
  sandbox: SandboxProvider,
  settings: Record<string, unknown> = {},
): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'tk-providers-'));
  const path = join(dir, 'providers.yaml');
  const extra = Object.entries(settings)
    .map(([key, value]) => `    ${key}: ${JSON.stringify(value)}\n`)
    .join('');
  writeFileSync(
    path,
    `providers:\n  sandbox:\n    tokenUrl: ${sandbox.tokenUrl}\n    revocationUrl: ${sandbox.revocationUrl}\n` +
      `    clientId: sandbox-client\n    clientSecret: \${SANDBOX_CLIENT_SECRET}\n    authMethod: client_secret_basic\n` +
      `    grant: refresh_token\n${extra}`,
  );
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Plain SQL for assertions, independent of the code under test. */
export class Db {
  private readonly pool: pg.Pool;
  constructor(url: string) {
    this.pool = new pg.Pool({ connectionString: url, max: 2 });
    // A closing client can still meet the database's drop (see Sql.open in the refresher's fixtures).
    this.pool.on('error', () => undefined);
  }
  async rows<T = any>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.pool.query(sql, params)).rows as T[];
  }
  async count(sql: string, params: unknown[] = []): Promise<number> {
    const rows = await this.rows<{ n: string }>(sql, params);
    return Number(rows[0].n);
  }
  close(): Promise<void> {
    return this.pool.end();
  }
}

/** Every message currently in the audit stream, raw, in stream order. */
export async function readAuditStream(
  nc: NatsConnection,
): Promise<{ subject: string; data: string; msgId?: string }[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(AUDIT_STREAM);
  const total = info.state.messages;
  const out: { subject: string; data: string; msgId?: string }[] = [];
  if (total === 0) return out;
  const consumer = await jetstream(nc).consumers.get(AUDIT_STREAM);
  const messages = await consumer.consume({ max_messages: 1_000 });
  for await (const msg of messages) {
    out.push({
      subject: msg.subject,
      data: new TextDecoder().decode(msg.data),
      msgId: msg.headers?.get('Nats-Msg-Id'),
    });
    if (msg.info.pending === 0) break;
  }
  await messages.close();
  return out;
}

/** Waits until every outbox record of the refresher database is in the audit table, and returns both id sets. */
export async function waitForAuditToCatchUp(
  refresherDb: Db,
  auditDb: Db,
  timeoutMs = 30_000,
): Promise<{ outbox: string[]; audit: string[] }> {
  let last = { outbox: [] as string[], audit: [] as string[] };
  await waitFor(
    async () => {
      const outbox = (
        await refresherDb.rows<{ event_id: string }>('SELECT event_id FROM outbox ORDER BY event_id')
      ).map((r) => r.event_id);
      const audit = (
        await auditDb.rows<{ event_id: string }>('SELECT event_id FROM audit_records ORDER BY event_id')
      ).map((r) => r.event_id);
      last = { outbox, audit };
      return outbox.length > 0 && audit.length >= outbox.length;
    },
    { timeoutMs, intervalMs: 250, message: 'the audit table to hold every outbox record' },
  );
  return last;
}
