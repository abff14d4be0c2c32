import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { parseTokenEventSubject, type TokenEventKind } from '@tokenkeeper/contracts';
import type { SandboxProvider } from '@tokenkeeper/testing';
import type { ProviderConfig } from '../src/providers/provider.types.js';
import { parseProvidersDocument } from '../src/providers/providers-file.loader.js';
import type { RawCaller, TestRefresher } from './refresher.harness.js';

export interface ProviderEntry {
  sandbox: SandboxProvider;
  grant?: 'refresh_token' | 'client_credentials';
  clientSecret?: string;
  [setting: string]: unknown;
}

/** A providers map with one entry per id, each pointing at a sandbox (parsed as the real file would be). */
export function providersFor(entries: Record<string, ProviderEntry>): Map<string, ProviderConfig> {
  const providers: Record<string, unknown> = {};
  for (const [id, { sandbox, grant, clientSecret, ...rest }] of Object.entries(entries)) {
    providers[id] = {
      tokenUrl: sandbox.tokenUrl,
      revocationUrl: sandbox.revocationUrl,
      clientId: 'sandbox-client',
      clientSecret: clientSecret ?? 'sandbox-secret',
      authMethod: 'client_secret_basic',
      grant: grant ?? 'refresh_token',
      ...rest,
    };
  }
  return parseProvidersDocument(JSON.stringify({ providers }), 'json', {});
}

export interface SeenEvent {
  subject: string;
  data: any;
  /** Date.now() when this process received it. */
  at: number;
}

/** Every `token.*` event, as a consumer on the bus sees it, with its arrival time. */
export class EventLog {
  readonly events: SeenEvent[] = [];
  private readonly subscription: Subscription;

  constructor(nc: NatsConnection, subject = 'token.>') {
    this.subscription = nc.subscribe(subject, {
      callback: (_err, msg) => {
        if (parseTokenEventSubject(msg.subject) === null) return; // token.get.<tenant>.<connection> is a request, not an event
        this.events.push({ subject: msg.subject, data: msg.json(), at: Date.now() });
      },
    });
  }

  of(kind: TokenEventKind, tenant: string, connection: string): SeenEvent[] {
    const subject = `token.${kind}.${tenant}.${connection}`;
    return this.events.filter((e) => e.subject === subject);
  }

  close(): void {
    this.subscription.unsubscribe();
  }
}

export interface Key {
  tenant: string;
  connection: string;
}

export async function describeCredential(caller: RawCaller, key: Key): Promise<any> {
  const reply = await caller.admin('describe', key);
  if (!reply.ok) throw new Error(`describe ${key.tenant}/${key.connection}: ${JSON.stringify(reply.error)}`);
  return reply.credential;
}

/** GET the sandbox's protected API with a bearer token; returns the HTTP status. */
export async function callApi(sandbox: SandboxProvider, accessToken: string): Promise<number> {
  const response = await fetch(sandbox.apiUrl, { headers: { authorization: `Bearer ${accessToken}` } });
  await response.arrayBuffer();
  return response.status;
}

/** Records when the sandbox's token-request counter moves, polling every few milliseconds. */
export class RequestClock {
  readonly arrivals: { at: number; count: number }[] = [];
  private readonly timer: NodeJS.Timeout;
  private last: number;

  constructor(
    private readonly sandbox: SandboxProvider,
    intervalMs = 5,
  ) {
    this.last = sandbox.stats.tokenRequests;
    this.timer = setInterval(() => {
      const count = this.sandbox.stats.tokenRequests;
      if (count !== this.last) {
        this.last = count;
        this.arrivals.push({ at: Date.now(), count });
      }
    }, intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** For afterEach: when a test failed, show the refresher's warnings and errors (secret-free by design). */
export function printLogsOnFailure(
  context: { task: { name: string; result?: { state?: string } } },
  ...refreshers: (TestRefresher | undefined)[]
): void {
  if (context.task.result?.state !== 'fail') return;
  for (const refresher of refreshers) {
    const lines = refresher?.logs.lines.filter((l) => /"level":"(warn|error|fatal)"/.test(l)) ?? [];
    console.log(
      `refresher ${refresher?.config.replicaId} log (${lines.length} warn/error lines, last 60) after "${context.task.name}":\n${lines.slice(-60).join('')}`,
    );
  }
}
