import type { Msg } from '@nats-io/transport-node';
import { type HeaderReader, parseTokenEvent, type SignatureVerifier, type TokenEvent } from '@tokenkeeper/contracts';
import type { RejectionReason, TokenClientLogger, TokenClientStats } from './token-client.options.js';

const decoder = new TextDecoder();

/**
 * Decides whether a pushed event or a token.get reply may touch the cache (defence in
 * depth beside the NATS permissions): with trusted signers, a valid scheme-2 signature by
 * one of them over the subject the message arrived on (for a reply: the subject it was
 * asked on), its signing time and its exact payload bytes, signed within the max age;
 * always, a payload naming the credential of its subject (events) or of the request
 * (replies).
 *
 * Runs when a message arrives, never when the cache is read: a hit costs the same
 * with or without verification. One native Ed25519 verify per message at most, and
 * none for a message that is unsigned, names an untrusted signer or another scheme, or
 * was signed outside the window.
 */
export class TokenMessageGuard {
  private readonly warned = new Set<string>();

  constructor(
    private readonly verifier: SignatureVerifier | null,
    private readonly stats: TokenClientStats,
    private readonly logger: TokenClientLogger,
    private readonly clock: () => number,
  ) {}

  get verifies(): boolean {
    return this.verifier !== null;
  }

  /** The event to apply, or null when it was dropped (and counted). */
  acceptEvent(msg: Msg): TokenEvent | null {
    if (this.verifier !== null) {
      const verdict = this.verifier.verify(msg.subject, msg.data, msg.headers, this.clock());
      if (verdict !== 'ok') {
        this.reject('event', verdict, msg.subject);
        return null;
      }
    }
    const event = parseTokenEvent(msg.subject, msg.data);
    if (event !== null) return event;
    // The rare path: tell a contradiction (someone writing another credential's entry)
    // from plain garbage, which costs a second JSON parse only for bad messages.
    if (namesAnotherCredential(msg.subject, msg.data)) this.reject('event', 'subject_mismatch', msg.subject);
    else this.stats.malformedEvents++;
    return null;
  }

  /**
   * The signature verdict of a reply carrying a token, as an answer to a request on
   * `subject` (`token.get.<tenant>.<connection>`); counts and returns the reason when it fails.
   */
  checkReplySignature(subject: string, data: Uint8Array, headers: HeaderReader | undefined): RejectionReason | null {
    if (this.verifier === null) return null;
    const verdict = this.verifier.verify(subject, data, headers, this.clock());
    if (verdict === 'ok') return null;
    this.reject('reply', verdict, subject);
    return verdict;
  }

  rejectReply(reason: RejectionReason, what: string): void {
    this.reject('reply', reason, what);
  }

  private reject(kind: 'event' | 'reply', reason: RejectionReason, what: string): void {
    if (kind === 'event') this.stats.rejectedEvents++;
    else this.stats.rejectedReplies++;
    this.stats.rejectedByReason[reason] = (this.stats.rejectedByReason[reason] ?? 0) + 1;
    // Once per kind and reason: enough to tell an operator, and a flood cannot flood the log.
    const key = `${kind}:${reason}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.warn(
      `TokenClient dropped a ${kind} (${reason}) on ${what}; further drops are only counted (stats.rejectedByReason)`,
    );
  }
}

/** Subject `token.<kind>.<tenant>.<connection>` with a JSON payload naming other names. */
function namesAnotherCredential(subject: string, data: Uint8Array): boolean {
  const parts = subject.split('.');
  if (parts.length !== 4) return false;
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(data));
  } catch {
    return false;
  }
  if (body === null || typeof body !== 'object') return false;
  const named = body as { tenant?: unknown; connection?: unknown };
  return (
    (named.tenant !== undefined && named.tenant !== parts[2]) ||
    (named.connection !== undefined && named.connection !== parts[3])
  );
}
