import { type MsgHdrs, MsgHdrsImpl } from '@nats-io/transport-node';

/** A reply sent with headers (a signed token reply): built once, answered many times. */
export interface ReplyWithHeaders {
  readonly data: Uint8Array;
  readonly headers: MsgHdrs;
}

/** What a request handler may answer: the encoded reply, or the encoded reply with its headers. */
export type RpcReply = Uint8Array | ReplyWithHeaders;

export function isReplyWithHeaders(value: unknown): value is ReplyWithHeaders {
  return (
    value !== null &&
    typeof value === 'object' &&
    (value as ReplyWithHeaders).data instanceof Uint8Array &&
    typeof (value as ReplyWithHeaders).headers?.get === 'function'
  );
}

/**
 * Headers whose wire form is computed once. nats.js encodes a message's headers on every
 * publish (MsgHdrsImpl.encode: a string build and a TextEncoder pass); a cached token reply
 * is answered thousands of times with the same two headers, so this one encodes on first
 * use and hands back the same bytes after that. It is sealed after construction: a change
 * would otherwise go unnoticed on the wire.
 */
class FixedHeaders extends MsgHdrsImpl {
  private encoded?: Uint8Array;
  private sealed = false;

  constructor(entries: Readonly<Record<string, string>>) {
    super();
    for (const [name, value] of Object.entries(entries)) super.append(name, value);
    this.sealed = true;
  }

  override encode(): Uint8Array {
    return (this.encoded ??= super.encode());
  }

  override set(k: string, v: string, match?: Parameters<MsgHdrsImpl['set']>[2]): void {
    this.refuse();
    super.set(k, v, match);
  }

  override append(k: string, v: string, match?: Parameters<MsgHdrsImpl['append']>[2]): void {
    this.refuse();
    super.append(k, v, match);
  }

  override delete(k: string, match?: Parameters<MsgHdrsImpl['delete']>[1]): void {
    this.refuse();
    super.delete(k, match);
  }

  private refuse(): void {
    if (this.sealed) throw new Error('fixed headers cannot be changed');
  }
}

/** Immutable headers, encoded once for all the publishes that carry them. */
export function fixedHeaders(entries: Readonly<Record<string, string>>): MsgHdrs {
  return new FixedHeaders(entries);
}
