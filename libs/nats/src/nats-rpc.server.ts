import { Logger } from '@nestjs/common';
import { type CustomTransportStrategy, type MessageHandler, Server } from '@nestjs/microservices';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { decodeJsonObject, encodeJson, REFRESHER_QUEUE_GROUP } from '@tokenkeeper/contracts';
import { isObservable, lastValueFrom } from 'rxjs';
import { errorToReply } from './rpc-error.mapper.js';

/**
 * A lean NATS transport for `@MessagePattern` handlers, speaking the plain-JSON wire
 * contract (no Nest envelope) so that any NATS client can call it.
 *
 * Nest's built-in NATS server wraps every request in an envelope and routes each reply
 * through an RxJS pipeline; measured here that costs 3–4× the CPU of a bare subscription.
 * This strategy keeps Nest's routing, DI and exception filters but calls the handler
 * directly: decode → handler → respond. A handler may return a pre-encoded Uint8Array
 * (the token.get hot path does), which is sent as is.
 */
export class NatsRpcServer extends Server implements CustomTransportStrategy {
  private readonly subscriptions: Subscription[] = [];
  private readonly rpcLogger = new Logger('NatsRpcServer');

  private readonly queue: string;
  private readonly direct: Readonly<Record<string, DirectHandler>>;

  constructor(
    private readonly nc: NatsConnection,
    options: NatsRpcServerOptions = {},
  ) {
    super();
    this.queue = options.queue ?? REFRESHER_QUEUE_GROUP;
    this.direct = options.direct ?? {};
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

  private async dispatch(subject: string, handler: MessageHandler, msg: Msg): Promise<void> {
    if (!msg.reply) return; // a publish without a reply inbox cannot be answered: drop it
    let reply: Uint8Array;
    try {
      const request = decodeJsonObject(msg.data);
      let result: unknown = await handler(request, msg);
      if (isObservable(result)) result = await lastValueFrom(result);
      reply = result instanceof Uint8Array ? result : encodeJson(result);
    } catch (error) {
      reply = errorToReply(error, subject, this.rpcLogger);
    }
    msg.respond(reply);
  }

  /**
   * decode → handler → respond, synchronously when the handler answers synchronously
   * (a token.get cache hit): no promise, no Nest pipeline. Errors are mapped exactly as
   * on the Nest path, by errorToReply.
   */
  private dispatchDirect(subject: string, handler: DirectHandler, msg: Msg): void {
    if (!msg.reply) return;
    let result: Uint8Array | Promise<Uint8Array>;
    try {
      result = handler(decodeJsonObject(msg.data));
    } catch (error) {
      msg.respond(errorToReply(error, subject, this.rpcLogger));
      return;
    }
    if (result instanceof Uint8Array) {
      msg.respond(result);
      return;
    }
    result.then(
      (reply) => msg.respond(reply),
      (error: unknown) => msg.respond(errorToReply(error, subject, this.rpcLogger)),
    );
  }
}

/** A request handler that takes the decoded payload and answers with the encoded reply. */
export type DirectHandler = (request: Record<string, unknown>) => Uint8Array | Promise<Uint8Array>;

export interface NatsRpcServerOptions {
  /** The queue group replicas share requests in (default `refresher`; the audit app uses `audit`). */
  queue?: string;
  /**
   * Hot subjects whose handler is called directly instead of through Nest's per-request
   * pipeline (guards, interceptors, pipes, filters: about half of token.get's CPU,
   * measured in docs/benchmarks.md). The subject must still be a `@MessagePattern`.
   */
  direct?: Record<string, DirectHandler>;
}
