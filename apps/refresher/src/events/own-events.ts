import { Injectable } from '@nestjs/common';
import {
  EventSigner,
  type HeaderReader,
  SIGNATURE_HEADER,
  type SignatureHeaders,
  SIGNED_AT_HEADER,
  SIGNER_HEADER,
} from '@tokenkeeper/contracts';

/** Events published but not heard back yet; past this the oldest are forgotten (they are then verified as usual). */
const MAX_REMEMBERED = 4_096;

/**
 * The events this process has just signed and published, so that their echo on its own
 * `token.*` subscriptions is recognised without an Ed25519 verify. Every replica hears its
 * own events; on a single replica that echo is the only traffic, and verifying it cost more
 * CPU than signing (about a sixth of the refresher's busy time in the pipeline).
 *
 * Recognition is exact, so it proves what a verify would: the signature header is one this
 * process produced, the signer header is its own key, the subject and the signing time are
 * the ones it signed for, and the bytes are byte for byte the ones it signed. A forger
 * cannot meet that without our signature over those very bytes on that very subject; our
 * event re-published on another subject is not recognised, and fails the verify too.
 * Anything else, and every event remembered no longer, goes through the SignatureVerifier
 * (which also refuses it once it is older than the max age).
 */
@Injectable()
export class OwnEvents {
  /** Signature → what it was made over; insertion order is publish order. */
  private readonly sent = new Map<string, { subject: string; signedAt: string; data: Uint8Array }>();

  constructor(private readonly signer: EventSigner) {}

  remember(headers: SignatureHeaders, subject: string, data: Uint8Array): void {
    this.sent.set(headers[SIGNATURE_HEADER], { subject, signedAt: headers[SIGNED_AT_HEADER], data });
    if (this.sent.size > MAX_REMEMBERED) this.sent.delete(this.sent.keys().next().value!);
  }

  /** True (once) when these are the subject, bytes and headers of an event this process published. */
  recognise(subject: string, data: Uint8Array, headers: HeaderReader | undefined): boolean {
    if (headers === undefined || this.sent.size === 0) return false;
    const signature = headers.get(SIGNATURE_HEADER);
    const sent = signature ? this.sent.get(signature) : undefined;
    if (sent === undefined || sent.subject !== subject || headers.get(SIGNER_HEADER) !== this.signer.publicKey)
      return false;
    if (headers.get(SIGNED_AT_HEADER) !== sent.signedAt) return false;
    const bytes = sent.data;
    if (!Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(data)) return false;
    this.sent.delete(signature);
    return true;
  }
}
