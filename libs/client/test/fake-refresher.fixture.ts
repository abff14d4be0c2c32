import { connect, headers, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  type CredentialKey,
  credentialId,
  encodeJson,
  type ErrorCode,
  errorReply,
  EventSigner,
  generateSigningSeed,
  MAX_MIN_TTL_SECONDS,
  parseTokenGetSubject,
  REFRESHER_QUEUE_GROUP,
  SIGNATURE_HEADER,
  SIGNATURE_PREFIX,
  type TokenEventKind,
  tokenEventSubject,
  type TokenGetRequest,
  type TokenView,
  WireSubscription,
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

export interface FakeRefresherOptions {
  /** `SU…` seed to sign with. Default: a fresh one per fake. */
  signingSeed?: string;
  /** Sign nothing, like a refresher before signatures existed. */
  unsigned?: boolean;
}

/** How a test wants one message (reply or event) to look on the wire. */
export type Forgery =
  /** No signature headers. */
  | 'unsigned'
  /** Signed correctly, by a key nobody trusts. */
  | 'foreign-signer'
  /** This fake's signer named, but the signature does not match the bytes. */
  | 'bad-signature'
  /** Signed correctly, but longer ago than the default max age (900 s). */
  | 'too-old'
  /** Signed correctly, but more than 60 s ahead. */
  | 'too-new'
  /** The signature of the scheme before scheme 2, as an older refresher sent it (no `v2.`). */
  | 'v1';

/** An event as it went on the wire, to send again (a replay) or elsewhere. */
export interface SentEvent {
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs | undefined;
}

/** The exact payload a client sent, with the credential its subject named. */
export interface ReceivedTokenGet extends TokenGetRequest {
  subject: string;
  payload: Record<string, unknown>;
}

/**
 * Plays the refresher in client tests: a raw nats.js responder on
 * `token.get.<tenant>.<connection>` in the contract's queue group that counts every
 * request and answers like the real refresher, signing token replies and events as it
 * does (or not, or badly, on request). Kept deliberately dumb so that a test reads as
 * the wire story.
 */
export class FakeRefresher {
  readonly requests: ReceivedTokenGet[] = [];
  /** What signs replies and events, or null for an unsigned fake. */
  readonly signer: EventSigner | null;
  /** A second key, trusted by nobody, for forgeries. */
  readonly foreignSigner = EventSigner.fromSeed(generateSigningSeed());
  private readonly tokens = new Map<string, TokenView>();
  private readonly errors = new Map<string, ErrorCode>();
  private readonly budgets = new Map<string, number>();
  private readonly silent = new Set<string>();
  private readonly replyForgeries = new Map<string, Forgery | { otherCredential: CredentialKey }>();
  /** Delay before each answer, so that concurrent callers surely overlap. */
  delayMs = 0;
  private sub?: Subscription;

  private constructor(
    readonly nc: NatsConnection,
    options: FakeRefresherOptions,
  ) {
    this.signer = options.unsigned ? null : EventSigner.fromSeed(options.signingSeed ?? generateSigningSeed());
  }

  static async start(servers: string, options: FakeRefresherOptions = {}): Promise<FakeRefresher> {
    const nc = await connect({ servers, ...FAST_RECONNECT });
    const refresher = new FakeRefresher(nc, options);
    refresher.sub = nc.subscribe(WireSubscription.tokenGet, {
      queue: REFRESHER_QUEUE_GROUP,
      callback: (err, msg) => {
        if (err !== null) return;
        void refresher.answer(msg.subject, msg.data).then((reply) => {
          if (reply !== null) msg.respond(reply.data, { headers: reply.headers });
        });
      },
    });
    await nc.flush();
    return refresher;
  }

  /** The `U…` key a client must trust to accept this fake's traffic. */
  get signerPublicKey(): string {
    if (this.signer === null) throw new Error('this FakeRefresher signs nothing');
    return this.signer.publicKey;
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

  /** Makes a report of this key's current version rejected answer `rate_limited` with `retryAfterSeconds` (undefined: refresh again). */
  rateLimit(key: CredentialKey, retryAfterSeconds: number | undefined): void {
    if (retryAfterSeconds === undefined) this.budgets.delete(credentialId(key));
    else this.budgets.set(credentialId(key), retryAfterSeconds);
  }

  /** Makes `token.get` for this key answer an error reply with `code`. */
  failWith(key: CredentialKey, code: ErrorCode): void {
    this.errors.set(credentialId(key), code);
  }

  /** Makes `token.get` for this key never answer. */
  ignore(key: CredentialKey): void {
    this.silent.add(credentialId(key));
  }

  /** Makes `token.get` for this key answer a forged reply: badly signed, or carrying another credential's token. */
  forgeReplies(key: CredentialKey, forgery: Forgery | { otherCredential: CredentialKey } | null): void {
    if (forgery === null) this.replyForgeries.delete(credentialId(key));
    else this.replyForgeries.set(credentialId(key), forgery);
  }

  requestsFor(key: CredentialKey): ReceivedTokenGet[] {
    return this.requests.filter((r) => r.tenant === key.tenant && r.connection === key.connection);
  }

  /** Publishes an event on `token.<kind>.<key>`, signed unless `forgery` says otherwise. */
  async publish(
    kind: TokenEventKind,
    key: CredentialKey,
    payload: Record<string, unknown>,
    forgery?: Forgery,
  ): Promise<SentEvent> {
    const subject = tokenEventSubject(kind, key.tenant, key.connection);
    const data = encodeJson({ eventId: randomUUID(), ...payload });
    const sent = { subject, data, headers: this.headersFor(subject, data, forgery) };
    await this.publishRaw(sent);
    return sent;
  }

  /** Sends bytes and headers as given: a replay, or a genuine event on another subject. */
  async publishRaw(event: SentEvent, subject = event.subject): Promise<void> {
    this.nc.publish(subject, event.data, { headers: event.headers });
    await this.nc.flush();
  }

  publishRefreshed(
    view: TokenView,
    kind: 'refreshed' | 'registered' = 'refreshed',
    forgery?: Forgery,
  ): Promise<SentEvent> {
    return this.publish(kind, view, { ...view, refreshedAt: new Date().toISOString() }, forgery);
  }

  publishRevoked(key: CredentialKey, version: number, forgery?: Forgery): Promise<SentEvent> {
    return this.publish(
      'revoked',
      key,
      { tenant: key.tenant, connection: key.connection, provider: 'sandbox', version },
      forgery,
    );
  }

  publishFailed(key: CredentialKey, version: number, status: string, forgery?: Forgery): Promise<SentEvent> {
    return this.publish(
      'failed',
      key,
      {
        tenant: key.tenant,
        connection: key.connection,
        provider: 'sandbox',
        code: status === 'reauth_required' ? 'reauth_required' : 'refresh_failed',
        message: 'provider said invalid_grant',
        attempt: 1,
        status,
        version,
      },
      forgery,
    );
  }

  async close(): Promise<void> {
    this.sub?.unsubscribe();
    await this.nc.close();
  }

  /**
   * Signature headers as the real refresher sets them for a message on `subject` (for a
   * reply: the request's subject), or what a forgery calls for.
   */
  headersFor(subject: string, data: Uint8Array, forgery?: Forgery): MsgHdrs | undefined {
    if (forgery === 'unsigned' || (forgery === undefined && this.signer === null)) return undefined;
    const signer = forgery === 'foreign-signer' ? this.foreignSigner : (this.signer ?? this.foreignSigner);
    const now = Date.now();
    const at = forgery === 'too-old' ? now - 901_000 : forgery === 'too-new' ? now + 61_000 : now;
    const values = { ...signer.headersFor(subject, data, at) };
    // A valid signature of other bytes: well-formed, wrong.
    if (forgery === 'bad-signature') values[SIGNATURE_HEADER] = signer.sign(subject, encodeJson({ other: 1 }), at);
    if (forgery === 'v1') values[SIGNATURE_HEADER] = values[SIGNATURE_HEADER].slice(SIGNATURE_PREFIX.length);
    const h = headers();
    for (const [name, value] of Object.entries(values)) h.set(name, value);
    return h;
  }

  private async answer(subject: string, data: Uint8Array): Promise<{ data: Uint8Array; headers?: MsgHdrs } | null> {
    const error = (code: ErrorCode, message: string) => ({ data: encodeJson(errorReply(code, message)) });
    let key: CredentialKey;
    let payload: Record<string, unknown>;
    try {
      key = parseTokenGetSubject(subject);
      const text = new TextDecoder().decode(data);
      payload = text.length === 0 ? {} : (JSON.parse(text) as Record<string, unknown>);
    } catch {
      return error('bad_request', 'bad token.get request');
    }
    if (
      (payload.tenant !== undefined && payload.tenant !== key.tenant) ||
      (payload.connection !== undefined && payload.connection !== key.connection)
    ) {
      return error('bad_request', 'payload names another credential than the subject');
    }
    const { minTtlSeconds, rejectedVersion } = payload as { minTtlSeconds?: number; rejectedVersion?: number };
    if (
      minTtlSeconds !== undefined &&
      (!Number.isInteger(minTtlSeconds) || minTtlSeconds < 0 || minTtlSeconds > MAX_MIN_TTL_SECONDS)
    ) {
      return error('bad_request', 'bad minTtlSeconds');
    }
    const request: ReceivedTokenGet = { ...key, subject, payload };
    if (minTtlSeconds !== undefined) request.minTtlSeconds = minTtlSeconds;
    if (rejectedVersion !== undefined) request.rejectedVersion = rejectedVersion;
    this.requests.push(request);
    const id = credentialId(key);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    if (this.silent.has(id)) return null;
    const code = this.errors.get(id);
    if (code !== undefined) return error(code, `credential ${id} is ${code}`);
    let view = this.tokens.get(id);
    if (view === undefined) return error('not_found', `no credential ${id}`);
    // The wire contract: a rejected version that is still current is refreshed once.
    if (rejectedVersion !== undefined && rejectedVersion === view.version) {
      const retryAfter = this.budgets.get(id);
      if (retryAfter !== undefined) {
        return {
          data: encodeJson(errorReply('rate_limited', `credential ${id} was refreshed moments ago`, retryAfter)),
        };
      }
      view = this.set(tokenView(view, view.version + 1));
    }
    const forgery = this.replyForgeries.get(id);
    if (forgery !== undefined && typeof forgery === 'object') {
      // Someone else's token, properly signed: only the request/answer comparison catches it.
      const reply = encodeJson({ ok: true, token: tokenView(forgery.otherCredential, view.version + 100) });
      return { data: reply, headers: this.headersFor(subject, reply) };
    }
    const reply = encodeJson({ ok: true, token: view });
    return { data: reply, headers: this.headersFor(subject, reply, forgery) };
  }
}
