import type { EventSigner } from '@tokenkeeper/contracts';
import { fixedHeaders, type ReplyWithHeaders } from '@tokenkeeper/nats';

/**
 * Signs encoded payload bytes once and pairs them with their two headers
 * (`Tokenkeeper-Signature`, `Tokenkeeper-Signer`), encoded once too: the same object is
 * published as an event or answered as a cached token reply as often as needed.
 */
export function signedPayload(signer: EventSigner, data: Uint8Array): ReplyWithHeaders {
  return Object.freeze({ data, headers: fixedHeaders(signer.headersFor(data)) });
}
