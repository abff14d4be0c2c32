import { readFileSync } from 'node:fs';
import {
  AuthorizationError,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
  type NatsConnection,
} from '@nats-io/transport-node';
import { AUDIT_QUERY_PREFIX, encodeJson } from '@tokenkeeper/contracts';
import { withSecretFiles } from '@tokenkeeper/common/core';
import {
  connectNats,
  NATS_SECRET_NAMES,
  type NatsConfig,
  natsConfigFrom,
  natsEnvShape,
  redactUrl,
} from '@tokenkeeper/nats/connect';
import { z } from 'zod';
import { serviceErrorFrom, UnreachableError, UsageError, type HintContext } from './cli.errors.js';
import type { Output } from './output.format.js';

import { DEFAULT_NATS_URL, DEFAULT_TIMEOUT_MS } from './cli.defaults.js';

export { DEFAULT_NATS_URL, DEFAULT_TIMEOUT_MS };

/** Where and how to connect: `--nats-url`/`NATS_URL`, auth, TLS and inbox prefix from the environment. */
export interface NatsSettings {
  nats: NatsConfig;
  timeoutMs: number;
}

const NatsEnvSchema = z.object(natsEnvShape);

/** The services' NATS_* rules (@tokenkeeper/nats), with `--nats-url` taking the place of NATS_URL. */
export function natsSettings(flags: { natsUrl?: string; timeout?: number }, env: NodeJS.ProcessEnv): NatsSettings {
  const flagUrl = flags.natsUrl?.trim() ? flags.natsUrl : undefined;
  const envUrl = env.NATS_URL?.trim() ? env.NATS_URL : undefined;
  const url = flagUrl ?? envUrl ?? DEFAULT_NATS_URL;
  const problems: string[] = [];
  const withFiles = withSecretFiles({ ...env, NATS_URL: url }, NATS_SECRET_NAMES, problems);
  const parsed = NatsEnvSchema.safeParse(withFiles);
  if (!parsed.success)
    throw new UsageError(`${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`);
  const nats = natsConfigFrom(parsed.data, problems);
  const [first, ...rest] = problems.map((line) => line.trim());
  if (first?.startsWith('NATS_URL:')) {
    throw new UsageError(`invalid NATS URL ${redactUrl(url)}`, 'use nats://host:port (comma-separated for a cluster)');
  }
  if (first) throw new UsageError(first, rest.length > 0 ? rest.join('; ') : undefined);
  return { nats, timeoutMs: flags.timeout ?? DEFAULT_TIMEOUT_MS };
}

export { redactUrl };

/** Which service answers a subject, for the "is it running?" hint. */
function serviceFor(subject: string): { name: string; start: string } {
  return subject === AUDIT_QUERY_PREFIX || subject.startsWith(`${AUDIT_QUERY_PREFIX}.`)
    ? { name: 'the audit service', start: 'npm run start:audit' }
    : { name: 'the refresher', start: 'npm run start:refresher' };
}

/** The server's permission violation behind an error, however nats.js wrapped it. */
function permissionViolation(error: unknown): PermissionViolationError | undefined {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return e;
  return undefined;
}

/** One NATS connection for the duration of a command. */
export class NatsSession {
  private constructor(
    readonly nc: NatsConnection,
    readonly settings: NatsSettings,
  ) {}

  get url(): string {
    return redactUrl(this.settings.nats.servers.join(','));
  }

  static async open(settings: NatsSettings, options: { reconnectForever?: boolean } = {}): Promise<NatsSession> {
    const { nats } = settings;
    if (nats.auth.kind === 'creds') {
      // Read once here for a usage error that names the variable; the connection reads it again.
      try {
        readFileSync(nats.auth.file);
      } catch (error) {
        throw new UsageError(
          `NATS_CREDS: cannot read ${nats.auth.file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        );
      }
    }
    const url = redactUrl(nats.servers.join(','));
    try {
      const nc = await connectNats(nats, 'tokenctl', {
        timeout: Math.min(settings.timeoutMs, 10_000),
        maxReconnectAttempts: options.reconnectForever ? -1 : 10,
        waitOnFirstConnect: false,
      });
      return new NatsSession(nc, settings);
    } catch (error) {
      if (error instanceof AuthorizationError || /authori[sz]ation/i.test((error as Error).message)) {
        throw new UnreachableError(
          `NATS at ${url} refused the credentials (${(error as Error).message})`,
          'check NATS_USER/NATS_PASS, NATS_TOKEN, NATS_CREDS or NATS_NKEY_SEED',
        );
      }
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      const detail = [(error as Error).message, cause].filter(Boolean).join(', ');
      throw new UnreachableError(
        `cannot reach NATS at ${url} (${detail})`,
        `is NATS running, and the refresher with it? NATS_URL=${url} (set NATS_URL or --nats-url)`,
      );
    }
  }

  /**
   * Sends a request and returns the decoded reply as is, whether ok or not. Transport
   * failures (no responders, timeout, closed connection) throw an UnreachableError.
   */
  async requestReply<T = Record<string, unknown>>(subject: string, body: unknown): Promise<T> {
    let data: Uint8Array;
    try {
      const msg = await this.nc.request(subject, encodeJson(body), { timeout: this.settings.timeoutMs });
      data = msg.data;
    } catch (error) {
      throw this.transportError(subject, error);
    }
    try {
      return JSON.parse(new TextDecoder().decode(data)) as T;
    } catch {
      throw serviceErrorFrom(null);
    }
  }

  /** Like requestReply, but an `{ok:false}` reply throws a ServiceError (exit 1) with a hint. */
  async request<T extends object>(
    subject: string,
    body: unknown,
    context: HintContext = {},
  ): Promise<{ ok: true } & T> {
    const reply = await this.requestReply<{ ok?: unknown }>(subject, body);
    if (reply?.ok !== true) throw serviceErrorFrom(reply, context);
    return reply as { ok: true } & T;
  }

  /** Classifies what went wrong on the way: always exit 3, with a hint naming the service. */
  transportError(subject: string, error: unknown): UnreachableError {
    // First: a refused publish also ends the request, which nats.js may report with it.
    const denied = permissionViolation(error);
    if (denied) {
      return new UnreachableError(
        `NATS denied ${denied.operation} on ${denied.subject}`,
        "this NATS user may not (`tokenctl authz` prints each role's permissions; a tenant admin reaches its own tenant only, with --tenant), and NATS_INBOX_PREFIX must be the user's own (_INBOX_<user>)",
      );
    }
    const service = serviceFor(subject);
    const running = `is ${service.name} running (${service.start})? NATS_URL=${this.url}`;
    const noResponders =
      error instanceof NoRespondersError ||
      (error instanceof RequestError && error.isNoResponders()) ||
      (error as Error)?.cause instanceof NoRespondersError;
    if (noResponders) return new UnreachableError(`no responders: nothing answers ${subject} on ${this.url}`, running);
    if (
      error instanceof TimeoutError ||
      (error as Error)?.cause instanceof TimeoutError ||
      /timeout/i.test(String((error as Error)?.message))
    ) {
      return new UnreachableError(
        `no reply to ${subject} within ${this.settings.timeoutMs} ms`,
        `${running}; a slow provider may need a longer --timeout`,
      );
    }
    return new UnreachableError(`request ${subject} failed: ${(error as Error)?.message ?? String(error)}`, running);
  }

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    try {
      await this.nc.drain();
    } catch {
      await this.nc.close().catch(() => undefined);
    }
  }
}

/** What every command gets: where to write, and a NATS session opened on first use. */
export interface CommandContext {
  out: Output;
  session(options?: { reconnectForever?: boolean }): Promise<NatsSession>;
}
