import { Inject, Injectable } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { withDeadline } from '@tokenkeeper/common';
import { NATS_CONNECTION } from '../nats/nats-connection.js';
import { DatabaseStatusRepository } from '../persistence/database-status.repository.js';
import { NatsStatusMonitor } from './nats-status.monitor.js';

/** Each dependency must answer within this long for the replica to count as ready. */
export const READINESS_TIMEOUT_MS = 1_000;

export interface CheckResult {
  status: 'up' | 'down';
  /** Why it is down; never holds a secret (connection strings are masked). */
  reason?: string;
  /** Round trip of the probe, when it answered. */
  ms?: number;
}

export interface ReadinessReport {
  status: 'ok' | 'unavailable';
  /** Names of the checks that failed, e.g. ["nats"]. */
  down: string[];
  checks: Record<string, CheckResult>;
}

/**
 * What /readyz answers: ready only when PostgreSQL answers `SELECT 1` in time, the NATS
 * connection is connected (not reconnecting, draining or closed) and answers a PING in
 * time, the migrations this build knows are applied, and the replica is not shutting
 * down. Concurrent probes share one check, so a slow dependency is not piled up on.
 */
@Injectable()
export class ReadinessService {
  private stopping = false;
  private migrationsConfirmed = false;
  private running?: Promise<ReadinessReport>;

  constructor(
    private readonly database: DatabaseStatusRepository,
    @Inject(NATS_CONNECTION) private readonly nc: NatsConnection,
    private readonly nats: NatsStatusMonitor,
  ) {}

  /** From the first moment of shutdown on, /readyz answers 503, so traffic moves elsewhere. */
  markStopping(): void {
    this.stopping = true;
  }

  check(): Promise<ReadinessReport> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async run(): Promise<ReadinessReport> {
    const [postgres, nats] = await Promise.all([this.checkPostgres(), this.checkNats()]);
    const migrations = await this.checkMigrations(postgres);
    const checks: Record<string, CheckResult> = { postgres, nats, migrations };
    if (this.stopping) checks.shutdown = { status: 'down', reason: 'shutting down' };
    const down = Object.entries(checks)
      .filter(([, check]) => check.status === 'down')
      .map(([name]) => name);
    return { status: down.length === 0 ? 'ok' : 'unavailable', down, checks };
  }

  private async checkPostgres(): Promise<CheckResult> {
    if (!this.database.isOpen) return { status: 'down', reason: 'connection pool closed' };
    return probe(() => this.database.ping());
  }

  private async checkNats(): Promise<CheckResult> {
    if (!this.nats.isConnected) return { status: 'down', reason: this.nats.status };
    return probe(() => this.nc.flush());
  }

  /** Applied migrations do not un-apply: once confirmed, not asked again. */
  private async checkMigrations(postgres: CheckResult): Promise<CheckResult> {
    if (this.migrationsConfirmed) return { status: 'up' };
    if (postgres.status === 'down') return { status: 'down', reason: 'unknown: database unreachable' };
    try {
      const pending = await withDeadline(this.database.pendingMigrations(), READINESS_TIMEOUT_MS);
      if (pending.length > 0) return { status: 'down', reason: `pending: ${pending.join(', ')}` };
      this.migrationsConfirmed = true;
      return { status: 'up' };
    } catch (error) {
      return { status: 'down', reason: safeReason(error) };
    }
  }
}

async function probe(action: () => Promise<unknown>): Promise<CheckResult> {
  const started = performance.now();
  try {
    await withDeadline(action(), READINESS_TIMEOUT_MS);
    return { status: 'up', ms: Math.round((performance.now() - started) * 10) / 10 };
  } catch (error) {
    return { status: 'down', reason: safeReason(error) };
  }
}

/** A short, secret-free reason: driver messages can quote a connection string. */
export function safeReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown })?.code;
  const text = message
    .replace(/\/\/[^/@\s]*@/g, '//[redacted]@')
    .replace(/\s+/g, ' ')
    .slice(0, 200);
  return typeof code === 'string' && !text.includes(code) ? `${code}: ${text}` : text;
}
