import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  Optional,
} from '@nestjs/common';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  credentialId,
  type HeaderReader,
  parseTokenEvent,
  parseTokenEventSubject,
  SignatureVerifier,
  TOKEN_EVENT_KINDS,
  tokenEventFilter,
} from '@tokenkeeper/contracts';
import { LogThrottle } from '@tokenkeeper/common';
import { Counter } from 'prom-client';
import { Clock } from '../domain/clock.js';
import { NATS_CONNECTION } from '../nats/nats-connection.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { OwnEvents } from './own-events.js';
import { ReplyCache } from './reply-cache.js';

/** Why an event was not applied (the `reason` label of tokenkeeper_events_dropped_total). */
export const EVENT_DROP_REASONS = [
  'unsigned',
  'untrusted',
  'bad_signature',
  'unsupported_scheme',
  'too_old',
  'too_new',
  'mismatch',
  'malformed',
] as const;
export type EventDropReason = (typeof EVENT_DROP_REASONS)[number];
/** Dropped events are logged at most once per reason in this long. */
export const EVENT_DROP_LOG_INTERVAL_MS = 10_000;

const decoder = new TextDecoder();

/**
 * Keeps this replica's reply cache coherent with the others: every replica hears every
 * `token.*` event (no queue group) and applies it by version. The four event types are
 * subscribed one by one, as the authorization model permits them (never `token.*.*.*`, which would also
 * take `token.get.*.*` requests).
 *
 * Nothing touches the cache before its signature checks out against the trusted signers
 * (this replica's own key and EVENT_TRUSTED_SIGNERS), over the subject it arrived on and
 * within SIGNATURE_MAX_AGE_SECONDS, or it is one of this process's own events heard back,
 * byte for byte and subject for subject as signed (OwnEvents): on a bus where anyone may
 * publish `token.refreshed.…`, a forged higher version would otherwise be served by every
 * replica, and a genuine refreshed event re-published on `token.revoked.…` would evict.
 * Then the contract's parser, the same one the client library uses: the subject names the
 * credential, and an event whose body names another one (or is malformed) is dropped too.
 * Drops are counted by reason and logged at most once per reason per interval.
 * After a reconnect the cache is dropped, since events published while we were away are
 * lost for us.
 */
@Injectable()
export class TokenEventListener implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(TokenEventListener.name);
  private readonly subscriptions: Subscription[] = [];
  private readonly dropped: Counter<'reason'>;
  private readonly dropLog: LogThrottle<EventDropReason>;

  constructor(
    @Inject(NATS_CONNECTION) private readonly nc: NatsConnection,
    private readonly cache: ReplyCache,
    private readonly clock: Clock,
    private readonly verifier: SignatureVerifier,
    metrics: RefreshMetrics,
    @Optional() private readonly own?: OwnEvents,
  ) {
    this.dropLog = new LogThrottle(EVENT_DROP_LOG_INTERVAL_MS, () => this.clock.now());
    this.dropped = new Counter({
      name: 'tokenkeeper_events_dropped_total',
      help: 'token.* events not applied to the reply cache, by reason (unsigned, untrusted signer, bad signature or signed for another subject, unsupported signature scheme, signed too long ago or in the future, body naming another credential than the subject, malformed)',
      labelNames: ['reason'],
      registers: [metrics.registry],
    });
    for (const reason of EVENT_DROP_REASONS) this.dropped.inc({ reason }, 0);
  }

  onApplicationBootstrap(): void {
    for (const kind of TOKEN_EVENT_KINDS) {
      this.subscriptions.push(
        this.nc.subscribe(tokenEventFilter(kind), {
          callback: (err, msg) => {
            if (err) return;
            this.apply(msg.subject, msg.data, msg.headers);
          },
        }),
      );
    }
    void this.watchReconnects();
  }

  async onApplicationShutdown(): Promise<void> {
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    this.subscriptions.length = 0;
  }

  /** Verifies and applies one event; exposed for tests. */
  apply(subject: string, data: Uint8Array, headers: HeaderReader | undefined): void {
    // Our own events come back to us: recognised by their exact bytes and signature (OwnEvents), not verified again.
    const verdict = this.own?.recognise(subject, data, headers)
      ? 'ok'
      : this.verifier.verify(subject, data, headers, this.clock.now());
    if (verdict !== 'ok') {
      this.drop(verdict, subject);
      return;
    }
    const event = parseTokenEvent(subject, data);
    if (event === null) {
      this.drop(namesAnotherCredential(subject, data) ? 'mismatch' : 'malformed', subject);
      return;
    }
    switch (event.kind) {
      case 'refreshed':
      case 'registered': {
        const { view, expiresAtMs } = event.token;
        const issuedAtMs = Number.isNaN(event.refreshedAtMs) ? this.clock.now() : event.refreshedAtMs;
        this.cache.observe(credentialId(view), view, issuedAtMs, expiresAtMs);
        break;
      }
      case 'revoked':
        this.cache.evict(credentialId(event), event.version);
        break;
      case 'failed':
        this.cache.interrupt(credentialId(event));
        break;
    }
  }

  private drop(reason: EventDropReason, subject: string): void {
    this.dropped.inc({ reason });
    const droppedSinceLastLog = this.dropLog.admit(reason);
    if (droppedSinceLastLog === undefined) return;
    // The subject, never the payload: a forged event may carry anything, a real one a token.
    this.logger.warn({
      msg: 'dropped a token event',
      reason,
      subject: subject.slice(0, 300),
      droppedSinceLastLog,
    });
  }

  private async watchReconnects(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'reconnect') {
        this.cache.clear();
        this.logger.log({ msg: 'reconnected to NATS; token cache dropped', server: status.server });
      }
    }
  }
}

/** Only on the drop path, to tell a body naming another credential from a malformed one. */
function namesAnotherCredential(subject: string, data: Uint8Array): boolean {
  const parts = parseTokenEventSubject(subject);
  if (parts === null) return false;
  try {
    const body: unknown = JSON.parse(decoder.decode(data));
    if (body === null || typeof body !== 'object') return false;
    const { tenant, connection } = body as Record<string, unknown>;
    return tenant !== parts.tenant || connection !== parts.connection;
  } catch {
    return false;
  }
}
