import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  type CredentialKey,
  credentialId,
  decodeJsonObject,
  encodeJson,
  type ErrorCode,
  errorReply,
  parseRequest,
  REFRESHER_QUEUE_GROUP,
  RpcSubject,
  type TokenEventKind,
  tokenEventSubject,
  type TokenGetRequest,
  TokenGetRequestSchema,
  type TokenView,
} from '@tokenkeeper/contracts';
import { randomUUID } from 'node:crypto';

/** Connection settings for tests that stop and restart the server. */
export const FAST_RECONNECT = { reconnectTimeWait: 50, maxReconnectAttempts: -1, reconnectJitter: 0 } as const;

export function tokenView(key: CredentialKey, version: number, ttlSeconds: number | null = 3600): TokenView {
  return {
    tenant: key.tenant,
    connection: key.connection,
    provider: 'sandbox',
    accessToken: `at-${key.tenant}-${key.connection}-v${version}`,
    tokenType: 'bearer',
    expiresAt: ttlSeconds === null ? null : new Date(Date.now() + ttlSeconds * 1000).toISOString(),
    version,
  };
}

/**
 * Plays the refresher in client tests: a raw nats.js responder in the contract's
 * queue group that counts every `token.get` and answers per SPEC §3, plus raw
 * event publishing. Kept deliberately dumb so that a test reads as the wire story.
 */
export class FakeRefresher {
  readonly requests: TokenGetRequest[] = [];
  private readonly tokens = new Map<string, TokenView>();
  private readonly errors = new Map<string, ErrorCode>();
  private readonly silent = new Set<string>();
  /** Delay before each answer, so that concurrent callers surely overlap. */
  delayMs = 0;
  private sub?: Subscription;

  private constructor(readonly nc: NatsConnection) {}

  static async start(servers: string): Promise<FakeRefresher> {
    const nc = await connect({ servers, ...FAST_RECONNECT });
    const refresher = new FakeRefresher(nc);
    refresher.sub = nc.subscribe(RpcSubject.get, {
      queue: REFRESHER_QUEUE_GROUP,
      callback: (err, msg) => {
        if (err === null) void refresher.answer(msg.data).then((reply) => msg.respond(encodeJson(reply)));
      },
    });
    await nc.flush();
    return refresher;
  }

  /** Stores a token; `token.get` answers it from now on. */
  set(view: TokenView): TokenView {
    this.tokens.set(credentialId(view), view);
    this.errors.delete(credentialId(view));
    return view;
  }

  current(key: CredentialKey): TokenView | undefined {
    return this.tokens.get(credentialId(key));
  }

  /** Makes `token.get` for this key answer an error reply with `code`. */
  failWith(key: CredentialKey, code: ErrorCode): void {
    this.errors.set(credentialId(key), code);
  }

  /** Makes `token.get` for this key never answer. */
  ignore(key: CredentialKey): void {
    this.silent.add(credentialId(key));
  }

  requestsFor(key: CredentialKey): TokenGetRequest[] {
    return this.requests.filter((r) => r.tenant === key.tenant && r.connection === key.connection);
  }

  async publish(kind: TokenEventKind, key: CredentialKey, payload: Record<string, unknown>): Promise<void> {
    this.nc.publish(tokenEventSubject(kind, key.tenant, key.connection), encodeJson({ eventId: randomUUID(), ...payload }));
    await this.nc.flush();
  }

  async publishRefreshed(view: TokenView, kind: 'refreshed' | 'registered' = 'refreshed'): Promise<void> {
    await this.publish(kind, view, { ...view, refreshedAt: new Date().toISOString() });
  }

  async publishRevoked(key: CredentialKey, version: number): Promise<void> {
    await this.publish('revoked', key, { tenant: key.tenant, connection: key.connection, provider: 'sandbox', version });
  }

  async publishFailed(key: CredentialKey, version: number, status: string): Promise<void> {
    await this.publish('failed', key, {
      tenant: key.tenant,
      connection: key.connection,
      provider: 'sandbox',
      code: status === 'reauth_required' ? 'reauth_required' : 'refresh_failed',
      message: 'provider said invalid_grant',
      attempt: 1,
      status,
      version,
    });
  }

  async close(): Promise<void> {
    this.sub?.unsubscribe();
    await this.nc.close();
  }

  private async answer(data: Uint8Array): Promise<object | null> {
    let request: TokenGetRequest;
    try {
      request = parseRequest(TokenGetRequestSchema, decodeJsonObject(data));
    } catch {
      return errorReply('bad_request', 'bad token.get request');
    }
    this.requests.push(request);
    const id = credentialId(request);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.silent.has(id)) return new Promise<never>(() => undefined);
    const code = this.errors.get(id);
    if (code !== undefined) return errorReply(code, `credential ${id} is ${code}`);
    let view = this.tokens.get(id);
    if (view === undefined) return errorReply('not_found', `no credential ${id}`);
    // SPEC §3: a rejected version that is still current is refreshed once.
    if (request.rejectedVersion !== undefined && request.rejectedVersion === view.version) {
      view = this.set(tokenView(view, view.version + 1));
    }
    return { ok: true, token: view };
  }
}
