import { Logger } from '@nestjs/common';
import { type CustomTransportStrategy, type MessageHandler, Server } from '@nestjs/microservices';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { LogThrottle } from '@tokenkeeper/common';
import { decodeJsonObject, encodeJson, REFRESHER_QUEUE_GROUP } from '@tokenkeeper/contracts';
import { isObservable, lastValueFrom } from 'rxjs';
import { isReplyWithHeaders, type RpcReply } from './fixed-headers.js';
import { errorToReply } from './rpc-error.mapper.js';

/** Why a request was dropped unanswered (the `reason` label of the drop counter). */
export type RpcDropReason = 'reply_subject' | 'own_inbox';

/** The reply subjects answered by default: inboxes, whatever their suffix. */
export const DEFAULT_REPLY_SUBJECT_PREFIXES: readonly string[] = ['_INBOX'];
/** A dropped request is logged at most once per reason in this long. */
export const DROP_LOG_INTERVAL_MS = 10_000;

/**
 * A lean NATS transport for `@MessagePattern` handlers, speaking the plain-JSON wire
 * contract (no Nest envelope) so that any NATS client can call it.
 *
 * Nest's built-in NATS server wraps every request in an envelope and routes each reply
 * through an RxJS pipeline; measured here that costs 3–4× the CPU of a bare subscription.
 * This strategy keeps Nest's routing, DI and exception filters but calls the handler
 * directly: decode → handler → respond. A handler may return a pre-encoded Uint8Array,
 * sent as is, or a pre-built `{ data, headers }` (the token.get hot path answers its
 * signed cached reply so), sent with those headers. Patterns are subscribed as they
 * are, wildcards included (`token.get.*.*`); a handler learns the concrete subject from
 * its second argument (direct handlers: the subject string; Nest handlers: the `Msg`).
 *
 * Reply-subject guard: a request is answered only when its reply subject starts with one
 * of `replySubjectPrefixes`, so that no requester can make the service publish a token
 * into `token.refreshed.…`, `audit.token.…` or `$JS.…`. Anything else is dropped
 * unanswered, counted (`onDrop`) and logged at most once per DROP_LOG_INTERVAL_MS per
 * reason, without the payload.
 *
 * The service's own inbox (`ownInboxPrefix`) is refused as well, though it starts with
 * `_INBOX` like every caller's: JetStream acks and the service's own requests are answered
 * there, so a reply forged into it could be taken for one of them.
 */
export class NatsRpcServer extends Server implements CustomTransportStrategy {
  private readonly subscriptions: Subscription[] = [];
  private readonly rpcLogger = new Logger('NatsRpcServer');

  private readonly queue: string;
  private readonly direct: Readonly<Record<string, DirectHandler>>;
  private readonly replyPrefixes: readonly string[];
  /** `<own prefix>.`: the own inbox's subjects all start so (nats.js adds `.` and a nuid). */
  private readonly ownInbox?: string;
  private readonly onDrop?: (reason: RpcDropReason) => void;
  private readonly dropLog = new LogThrottle<RpcDropReason>(DROP_LOG_INTERVAL_MS);

  constructor(
    private readonly nc: NatsConnection,
    options: NatsRpcServerOptions = {},
  ) {
    super();
    this.queue = options.queue ?? REFRESHER_QUEUE_GROUP;
    this.direct = options.direct ?? {};
    this.replyPrefixes = [...(options.replySubjectPrefixes ?? DEFAULT_REPLY_SUBJECT_PREFIXES)];
    if (this.replyPrefixes.length === 0) throw new Error('NatsRpcServer: at least one reply subject prefix is needed');
    if (options.ownInboxPrefix) this.ownInbox = `${options.ownInboxPrefix}.`;
    this.onDrop = options.onDrop;
  }

  listen(callback: (...optionalParams: unknown[]) => void): void {
    for (const [subject, handler] of this.messageHandlers) {
      if (handler.isEventHandler) continue;
      const directHandler = this.direct[subject];
      this.subscriptions.push(
        this.nc.subscribe(subject, {
          queue: this.queue,
          callback: (err, msg) => {
            if (err) {
              this.rpcLogger.warn({ msg: 'subscription error', subject, error: err.message });
              return;
            }
            const reply = msg.reply;
            if (!reply) return; // a publish without a reply inbox cannot be answered: drop it
            if (!this.answersTo(reply)) {
              this.drop('reply_subject', subject, reply);
              return;
            }
            if (this.isOwnInbox(reply)) {
              this.drop('own_inbox', subject, reply);
              return;
            }
            if (directHandler) this.dispatchDirect(subject, directHandler, msg);
            else void this.dispatch(subject, handler, msg);
          },
        }),
      );
    }
    callback();
  }

  /** Stops taking requests; in-flight ones still get their replies. */
  async close(): Promise<void> {
    await Promise.allSettled(this.subscriptions.map((s) => s.drain()));
    this.subscriptions.length = 0;
  }

  on(): never {
    throw new Error('NatsRpcServer does not emit transport events');
  }

  unwrap<T>(): T {
    return this.nc as T;
  }

  /** On every request, so a plain loop: one or two prefixes in practice. */
  private answersTo(reply: string): boolean {
    const prefixes = this.replyPrefixes;
    for (let i = 0; i < prefixes.length; i++) if (reply.startsWith(prefixes[i])) return true;
    return false;
  }

  private isOwnInbox(reply: string): boolean {
    const own = this.ownInbox;
    return own !== undefined && (reply.startsWith(own) || reply === own.slice(0, -1));
  }

  private drop(reason: RpcDropReason, subject: string, reply: string): void {
    try {
      this.onDrop?.(reason);
    } catch {
      // A broken metric must not turn a dropped request into a crashed subscription.
    }
    const droppedSinceLastLog = this.dropLog.admit(reason);
    if (droppedSinceLastLog === undefined) return;
    this.rpcLogger.warn({
      msg:
        reason === 'own_inbox'
          ? "request dropped unanswered: reply subject is this service's own inbox (NATS_INBOX_PREFIX)"
          : 'request dropped unanswered: reply subject outside REPLY_SUBJECT_PREFIXES',
      reason,
      subject,
      reply: reply.slice(0, 120),
      droppedSinceLastLog,
    });
  }

  private async dispatch(subject: string, handler: MessageHandler, msg: Msg): Promise<void> {
    let reply: RpcReply;
    try {
      // Nest handlers read the subject (and so the credential it names) from the Msg context.
      let result: unknown = await handler(decodeRequest(msg.data), msg);
      if (isObservable(result)) result = await lastValueFrom(result);
      reply = result instanceof Uint8Array || isReplyWithHeaders(result) ? result : encodeJson(result);
    } catch (error) {
      reply = errorToReply(error, subject, this.rpcLogger);
    }
    respond(msg, reply);
  }

  /**
   * decode → handler → respond, synchronously when the handler answers synchronously
   * (a token.get cache hit): no promise, no Nest pipeline. Errors are mapped exactly as
   * on the Nest path, by errorToReply.
   */
  private dispatchDirect(subject: string, handler: DirectHandler, msg: Msg): void {
    let result: RpcReply | Promise<RpcReply>;
    try {
      result = handler(decodeRequest(msg.data), msg.subject);
    } catch (error) {
      msg.respond(errorToReply(error, subject, this.rpcLogger));
      return;
    }
    if (!(result instanceof Promise)) {
      respond(msg, result);
      return;
    }
    result.then(
      (reply) => respond(msg, reply),
      (error: unknown) => msg.respond(errorToReply(error, subject, this.rpcLogger)),
    );
  }
}

/** The wire contract: an empty payload is `{}` (`nats req token.get.acme.github ''` is a valid request). */
function decodeRequest(data: Uint8Array): Record<string, unknown> {
  return data.length === 0 ? {} : decodeJsonObject(data);
}

/** Sends a reply, with its headers when it has them (a signed token reply). */
function respond(msg: Msg, reply: RpcReply): void {
  if (reply instanceof Uint8Array) msg.respond(reply);
  else msg.respond(reply.data, { headers: reply.headers });
}

/**
 * A request handler that takes the decoded payload and the subject it arrived on (which
 * names the credential, the wire contract) and answers with the encoded reply (and its headers, if any).
 */
export type DirectHandler = (request: Record<string, unknown>, subject: string) => RpcReply | Promise<RpcReply>;

export interface NatsRpcServerOptions {
  /** The queue group replicas share requests in (default `refresher`; the audit app uses `audit`). */
  queue?: string;
  /**
   * Hot subjects whose handler is called directly instead of through Nest's per-request
   * pipeline (guards, interceptors, pipes, filters: about half of token.get's CPU,
   * measured in docs/benchmarks.md). The key is the subscription (it may hold wildcards,
   * e.g. `token.get.*.*`) and must still be a `@MessagePattern`.
   */
  direct?: Record<string, DirectHandler>;
  /** Reply subjects answered (REPLY_SUBJECT_PREFIXES; default `_INBOX`); others are dropped. */
  replySubjectPrefixes?: readonly string[];
  /**
   * The inbox prefix of `nc` itself (NATS_INBOX_PREFIX, or the private one `withOwnInbox`
   * picks): replies into it are dropped (reason `own_inbox`) whatever REPLY_SUBJECT_PREFIXES says.
   */
  ownInboxPrefix?: string;
  /** Called once per dropped request, e.g. a counter's inc (see rpcDropCounter). */
  onDrop?: (reason: RpcDropReason) => void;
}
