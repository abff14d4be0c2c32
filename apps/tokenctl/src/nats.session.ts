import { readFileSync } from 'node:fs';
import {
  AuthorizationError,
  connect,
  credsAuthenticator,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { AUDIT_QUERY_SUBJECT, encodeJson } from '@tokenkeeper/contracts';
import { serviceErrorFrom, UnreachableError, UsageError, type HintContext } from './cli.errors.js';
import type { Output } from './output.format.js';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';
export const DEFAULT_TIMEOUT_MS = 15_000;

/** Where and how to connect: `--nats-url`/`NATS_URL`, auth and TLS from the environment. */
export interface NatsSettings {
  servers: string[];
  timeoutMs: number;
  auth: { user?: string; pass?: string; token?: string; credsFile?: string };
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

const set = (value: string | undefined) => (value === undefined || value.trim() === '' ? undefined : value);

export function natsSettings(flags: { natsUrl?: string; timeout?: number }, env: NodeJS.ProcessEnv): NatsSettings {
  const url = set(flags.natsUrl) ?? set(env.NATS_URL) ?? DEFAULT_NATS_URL;
  const servers = url.split(',').map((s) => s.trim()).filter(Boolean);
  if (servers.length === 0 || servers.some((s) => !/^((nats|tls|ws|wss):\/\/)?[^\s/]+(:\d+)?\/?$/.test(s))) {
    throw new UsageError(`invalid NATS URL ${redactUrl(url)}`, 'use nats://host:port (comma-separated for a cluster)');
  }
  let [user, pass, token, credsFile] = [set(env.NATS_USER), set(env.NATS_PASS), set(env.NATS_TOKEN), set(env.NATS_CREDS)];
  // nats://user:pass@host or nats://token@host, as the nats CLI accepts: moved out of the URL.
  const embedded = userInfo(servers[0]);
  if (embedded && user === undefined && token === undefined && credsFile === undefined) {
    if (embedded.pass !== undefined) [user, pass] = [embedded.user, embedded.pass];
    else token = embedded.user;
  }
  for (let i = 0; i < servers.length; i++) servers[i] = servers[i].replace(/\/\/[^/@\s]*@/, '//');
  if ((user === undefined) !== (pass === undefined)) throw new UsageError('NATS_USER and NATS_PASS: set both or neither');
  if ([user, token, credsFile].filter((v) => v !== undefined).length > 1) {
    throw new UsageError('NATS_USER/NATS_TOKEN/NATS_CREDS: choose one way to authenticate');
  }
  const [caFile, certFile, keyFile] = [set(env.NATS_TLS_CA), set(env.NATS_TLS_CERT), set(env.NATS_TLS_KEY)];
  if ((certFile === undefined) !== (keyFile === undefined)) throw new UsageError('NATS_TLS_CERT and NATS_TLS_KEY: set both or neither');
  return {
    servers,
    timeoutMs: flags.timeout ?? DEFAULT_TIMEOUT_MS,
    auth: { user, pass, token, credsFile },
    tls: caFile || certFile ? { caFile, certFile, keyFile } : undefined,
  };
}

function userInfo(server: string): { user: string; pass?: string } | null {
  const match = /^[a-z]+:\/\/([^/@\s]*)@/.exec(server);
  if (!match || match[1] === '') return null;
  const [user, ...rest] = match[1].split(':');
  return { user: decodeURIComponent(user), pass: rest.length > 0 ? decodeURIComponent(rest.join(':')) : undefined };
}

/** A URL fit for a message: any `user:pass@` is replaced. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@\s]*@/g, '//***@');
}

/** Which service answers a subject, for the "is it running?" hint. */
function serviceFor(subject: string): { name: string; start: string } {
  return subject === AUDIT_QUERY_SUBJECT
    ? { name: 'the audit service', start: 'npm run start:audit' }
    : { name: 'the refresher', start: 'npm run start:refresher' };
}

/** One NATS connection for the duration of a command. */
export class NatsSession {
  private constructor(
    readonly nc: NatsConnection,
    readonly settings: NatsSettings,
  ) {}

  get url(): string {
    return redactUrl(this.settings.servers.join(','));
  }

  static async open(settings: NatsSettings, options: { reconnectForever?: boolean } = {}): Promise<NatsSession> {
    const connectOptions: NodeConnectionOptions = {
      servers: settings.servers,
      name: 'tokenctl',
      timeout: Math.min(settings.timeoutMs, 10_000),
      maxReconnectAttempts: options.reconnectForever ? -1 : 10,
      reconnectTimeWait: 250,
      noAsyncTraces: true,
    };
    const { auth, tls } = settings;
    if (auth.user !== undefined) Object.assign(connectOptions, { user: auth.user, pass: auth.pass });
    if (auth.token !== undefined) connectOptions.token = auth.token;
    if (auth.credsFile !== undefined) {
      let creds: Uint8Array;
      try {
        creds = readFileSync(auth.credsFile);
      } catch (error) {
        throw new UsageError(`NATS_CREDS: cannot read ${auth.credsFile} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      connectOptions.authenticator = credsAuthenticator(creds);
    }
    if (tls) connectOptions.tls = { ...(tls.caFile ? { caFile: tls.caFile } : {}), ...(tls.certFile ? { certFile: tls.certFile, keyFile: tls.keyFile } : {}) };
    const url = redactUrl(settings.servers.join(','));
    try {
      return new NatsSession(await connect(connectOptions), settings);
    } catch (error) {
      if (error instanceof AuthorizationError || /authori[sz]ation/i.test((error as Error).message)) {
        throw new UnreachableError(
          `NATS at ${url} refused the credentials (${(error as Error).message})`,
          'check NATS_USER/NATS_PASS, NATS_TOKEN or NATS_CREDS',
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
  async request<T extends object>(subject: string, body: unknown, context: HintContext = {}): Promise<{ ok: true } & T> {
    const reply = await this.requestReply<{ ok?: unknown }>(subject, body);
    if (reply?.ok !== true) throw serviceErrorFrom(reply, context);
    return reply as { ok: true } & T;
  }

  /** Classifies what went wrong on the way: always exit 3, with a hint naming the service. */
  transportError(subject: string, error: unknown): UnreachableError {
    const service = serviceFor(subject);
    const running = `is ${service.name} running (${service.start})? NATS_URL=${this.url}`;
    const noResponders =
      error instanceof NoRespondersError ||
      (error instanceof RequestError && error.isNoResponders()) ||
      (error as Error)?.cause instanceof NoRespondersError;
    if (noResponders) return new UnreachableError(`no responders: nothing answers ${subject} on ${this.url}`, running);
    if (error instanceof TimeoutError || (error as Error)?.cause instanceof TimeoutError || /timeout/i.test(String((error as Error)?.message))) {
      return new UnreachableError(
        `no reply to ${subject} within ${this.settings.timeoutMs} ms`,
        `${running}; a slow provider may need a longer --timeout`,
      );
    }
    if (error instanceof PermissionViolationError) {
      return new UnreachableError(`NATS denied ${error.operation} on ${error.subject}`, 'the NATS user needs permission for token.> and _INBOX.>');
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
