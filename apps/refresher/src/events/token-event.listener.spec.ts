import { Logger } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  encodeJson,
  EventSigner,
  generateSigningSeed,
  SIGNATURE_HEADER,
  SignatureVerifier,
  SIGNED_AT_HEADER,
  SIGNER_HEADER,
  type TokenView,
} from '@tokenkeeper/contracts';
import { fixedHeaders } from '@tokenkeeper/nats';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeReply, FakeClock, T0, testSigner } from '../../test/unit/core-fakes.js';
import { RefreshMetrics } from '../metrics/refresh.metrics.js';
import { ReplyCache } from './reply-cache.js';
import { TokenEventListener } from './token-event.listener.js';

const view = (over: Partial<TokenView> = {}): TokenView => ({
  tenant: 'acme',
  connection: 'github',
  provider: 'sandbox',
  accessToken: 'at_real',
  tokenType: 'Bearer',
  expiresAt: new Date(T0 + 3_600_000).toISOString(),
  version: 1,
  ...over,
});
const event = (over: Partial<TokenView>) =>
  encodeJson({ eventId: 'e', ...view(over), refreshedAt: new Date(T0).toISOString() });
const signedBy = (signer: EventSigner, subject: string, data: Uint8Array, at = T0) =>
  fixedHeaders(signer.headersFor(subject, data, at));

describe('TokenEventListener: signed events, the subject names the credential', () => {
  beforeAll(() => Logger.overrideLogger(false));

  const rotated = EventSigner.fromSeed(generateSigningSeed());
  const stranger = EventSigner.fromSeed(generateSigningSeed());

  const setup = () => {
    const clock = new FakeClock();
    const cache = new ReplyCache(10, testSigner, { clock: () => clock.now() });
    cache.put(view(), T0);
    const metrics = new RefreshMetrics();
    const verifier = new SignatureVerifier([testSigner.publicKey, rotated.publicKey]);
    const listener = new TokenEventListener({} as NatsConnection, cache, clock, verifier, metrics);
    /** Signed by this replica's own key, like every real event on the bus. */
    const apply = (subject: string, data: Uint8Array, signer: EventSigner = testSigner) =>
      listener.apply(subject, data, signedBy(signer, subject, data));
    const dropped = async () => {
      const metric = (await metrics.registry.getMetricsAsJSON()).find(
        (m) => m.name === 'tokenkeeper_events_dropped_total',
      )!;
      return Object.fromEntries(metric.values.map((v) => [v.labels.reason, v.value]));
    };
    return { cache, listener, apply, dropped, clock, served: () => decodeReply(cache.get('acme/github')!.reply).token };
  };

  it('drops an event whose body names another credential than its subject', async () => {
    const { cache, apply, served, dropped } = setup();
    apply('token.refreshed.evil.x', event({ accessToken: 'attacker', version: Number.MAX_SAFE_INTEGER }));
    apply('token.registered.acme.other', event({ accessToken: 'attacker', version: Number.MAX_SAFE_INTEGER }));
    apply(
      'token.revoked.evil.x',
      encodeJson({ eventId: 'e', tenant: 'acme', connection: 'github', provider: 'sandbox', version: 99 }),
    );
    expect(served()).toMatchObject({ accessToken: 'at_real', version: 1 });
    expect(cache.get('evil/x')).toBeUndefined();
    expect((await dropped()).mismatch).toBe(3);

    // A real later version still replaces the entry.
    apply('token.refreshed.acme.github', event({ accessToken: 'at_v2', version: 2 }));
    expect(served()).toMatchObject({ accessToken: 'at_v2', version: 2 });
  });

  it('drops malformed bodies and applies a revoke by version', async () => {
    const { cache, apply, served, dropped } = setup();
    apply('token.refreshed.acme.github', new TextEncoder().encode('{not json'));
    apply('token.refreshed.acme.github', event({ version: -1 }));
    apply('token.refreshed.acme.github', encodeJson({ tenant: 'acme', connection: 'github', version: 5 }));
    expect(served().version).toBe(1);
    expect((await dropped()).malformed).toBe(3);
    apply(
      'token.revoked.acme.github',
      encodeJson({ eventId: 'e', tenant: 'acme', connection: 'github', provider: 'sandbox', version: 1 }),
    );
    expect(cache.get('acme/github')).toBeUndefined();
  });

  it('drops unsigned, untrusted and badly signed events before they touch the cache, by reason', async () => {
    const { listener, apply, served, dropped } = setup();
    const forged = event({ accessToken: 'attacker', version: 99 });
    listener.apply('token.refreshed.acme.github', forged, undefined);
    listener.apply('token.refreshed.acme.github', forged, fixedHeaders({}));
    apply('token.refreshed.acme.github', forged, stranger);
    // Our key's signature over other bytes, and our key named with a stranger's signature.
    const subject = 'token.refreshed.acme.github';
    listener.apply(subject, forged, signedBy(testSigner, subject, event({ version: 1 })));
    listener.apply(
      subject,
      forged,
      fixedHeaders({
        [SIGNATURE_HEADER]: stranger.sign(subject, forged, T0),
        [SIGNER_HEADER]: testSigner.publicKey,
        [SIGNED_AT_HEADER]: String(T0),
      }),
    );
    listener.apply(
      subject,
      forged,
      fixedHeaders({
        [SIGNATURE_HEADER]: 'v2.not-base64url!',
        [SIGNER_HEADER]: testSigner.publicKey,
        [SIGNED_AT_HEADER]: String(T0),
      }),
    );
    // Scheme 1 (a bare signature of the payload alone) is no longer accepted at all.
    const bare = testSigner.sign(subject, forged, T0).slice(3);
    listener.apply(
      subject,
      forged,
      fixedHeaders({ [SIGNATURE_HEADER]: bare, [SIGNER_HEADER]: testSigner.publicKey, [SIGNED_AT_HEADER]: String(T0) }),
    );
    expect(served()).toMatchObject({ accessToken: 'at_real', version: 1 });
    expect(await dropped()).toEqual({
      unsigned: 2,
      untrusted: 1,
      bad_signature: 3,
      unsupported_scheme: 1,
      too_old: 0,
      too_new: 0,
      mismatch: 0,
      malformed: 0,
    });
  });

  it('drops a genuine refreshed event re-published on token.revoked: the signature names its subject', async () => {
    const { cache, listener, served, dropped } = setup();
    const refreshed = event({ accessToken: 'at_v2', version: 2 });
    const headers = signedBy(testSigner, 'token.refreshed.acme.github', refreshed);
    listener.apply('token.revoked.acme.github', refreshed, headers);
    listener.apply('token.failed.acme.github', refreshed, headers);
    expect(cache.get('acme/github')).toBeDefined();
    expect(served()).toMatchObject({ accessToken: 'at_real', version: 1 });
    expect((await dropped()).bad_signature).toBe(2);
    // The same bytes and headers on the subject they were signed for apply.
    listener.apply('token.refreshed.acme.github', refreshed, headers);
    expect(served()).toMatchObject({ accessToken: 'at_v2', version: 2 });
  });

  it('drops an event signed longer ago than the max age, or more than 60 s ahead, on its own clock', async () => {
    const { listener, served, dropped, clock } = setup();
    const subject = 'token.refreshed.acme.github';
    const later = event({ accessToken: 'at_v2', version: 2 });
    clock.nowMs = T0 + 900_001;
    listener.apply(subject, later, signedBy(testSigner, subject, later, T0));
    listener.apply(subject, later, signedBy(testSigner, subject, later, clock.nowMs + 60_001));
    expect(served()).toMatchObject({ version: 1 });
    expect(await dropped()).toMatchObject({ too_old: 1, too_new: 1 });
    listener.apply(subject, later, signedBy(testSigner, subject, later, T0 + 1));
    expect(served()).toMatchObject({ version: 2 });
  });

  it('trusts a listed second key (rotation), and re-signs what it caches with its own', () => {
    const { cache, apply, served } = setup();
    apply('token.refreshed.acme.github', event({ accessToken: 'at_v2', version: 2 }), rotated);
    expect(served()).toMatchObject({ accessToken: 'at_v2', version: 2 });
    const reply = cache.get('acme/github')!.reply;
    expect(reply.headers.get(SIGNER_HEADER)).toBe(testSigner.publicKey);
    expect(
      new SignatureVerifier([testSigner.publicKey]).verify('token.get.acme.github', reply.data, reply.headers, T0),
    ).toBe('ok');
  });

  it('logs dropped events at most once per reason per interval, with the count it skipped', () => {
    const { listener, clock } = setup();
    const warnings: unknown[] = [];
    const logger = (listener as unknown as { logger: Logger }).logger;
    logger.warn = (message: unknown) => void warnings.push(message);
    for (let i = 0; i < 50; i++)
      listener.apply('token.refreshed.acme.github', event({ accessToken: 'attacker-secret', version: 99 }), undefined);
    expect(warnings).toHaveLength(1);
    clock.nowMs += 10_001;
    listener.apply('token.refreshed.acme.github', event({ accessToken: 'attacker-secret', version: 99 }), undefined);
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toMatchObject({ reason: 'unsigned', droppedSinceLastLog: 49 });
    expect(JSON.stringify(warnings)).not.toContain('attacker-secret');
  });
});
