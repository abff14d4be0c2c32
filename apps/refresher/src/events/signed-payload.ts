import type { EventSigner } from '@tokenkeeper/contracts';
import { fixedHeaders, type ReplyWithHeaders } from '@tokenkeeper/nats';

/** A signed message ready to send, with the time it was signed (the reply cache re-signs before it ages out). */
export interface SignedPayload extends ReplyWithHeaders {
  readonly signedAtMs: number;
}

/**
 * Signs encoded payload bytes for one subject, once, and pairs them with their three
 * headers (`Tokenkeeper-Signature`, `Tokenkeeper-Signer`, `Tokenkeeper-Signed-At`), encoded
 * once too: the same object is published as an event or answered as a cached token reply
 * as often as needed, until it is re-signed.
 */
export function signedPayload(
  signer: EventSigner,
  subject: string,
  data: Uint8Array,
  signedAtMs: number,
): SignedPayload {
  return Object.freeze({ data, headers: fixedHeaders(signer.headersFor(subject, data, signedAtMs)), signedAtMs });
}
