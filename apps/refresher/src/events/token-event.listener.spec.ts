import { Logger } from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { encodeJson, EventSigner, generateSigningSeed, SIGNATURE_HEADER, SignatureVerifier, SIGNER_HEADER, type TokenView } from '@tokenkeeper/contracts';
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
const event = (over: Partial<TokenView>) => encodeJson({ eventId: 'e', ...view(over), refreshedAt: new Date(T0).toISOString() });
const signedBy = (signer: EventSigner, data: Uint8Array) => fixedHeaders(signer.headersFor(data));

describe('TokenEventListener: signed events, the subject names the credential', () => {
  beforeAll(() => Logger.overrideLogger(false));

  const rotated = EventSigner.fromSeed(generateSigningSeed());
  const stranger = EventSigner.fromSeed(generateSigningSeed());

  const setup = () => {
    const cache = new ReplyCache(10, testSigner);
    cache.put(view(), T0);
    const metrics = new RefreshMetrics();
    const clock = new FakeClock();
    const verifier = new SignatureVerifier([testSigner.publicKey, rotated.publicKey]);
    const listener = new TokenEventListener({} as NatsConnection, cache, clock, verifier, metrics);
    /** Signed by this replica's own key, like every real event on the bus. */
    const apply = (subject: string, data: Uint8Array, signer: EventSigner = testSigner) => listener.apply(subject, data, signedBy(signer, data));
    const dropped = async () => {
      const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'tokenkeeper_events_dropped_total')!;
      return Object.fromEntries(metric.values.map((v) => [v.labels.reason, v.value]));
    };
    return { cache, listener, apply, dropped, clock, served: () => decodeReply(cache.get('acme/github')!.reply).token };
  };

  it('drops an event whose body names another credential than its subject', async () => {
    const { cache, apply, served, dropped } = setup();
    apply('token.refreshed.evil.x', event({ accessToken: 'attacker', version: Number.MAX_SAFE_INTEGER }));
    apply('token.registered.acme.other', event({ accessToken: 'attacker', version: Number.MAX_SAFE_INTEGER }));
    apply('token.revoked.evil.x', encodeJson({ eventId: 'e', tenant: 'acme', connection: 'github', provider: 'sandbox', version: 99 }));
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
    apply('token.revoked.acme.github', encodeJson({ eventId: 'e', tenant: 'acme', connection: 'github', provider: 'sandbox', version: 1 }));
    expect(cache.get('acme/github')).toBeUndefined();
  });

  it('drops unsigned, untrusted and badly signed events before they touch the cache, by reason', async () => {
    const { listener, apply, served, dropped } = setup();
    const forged = event({ accessToken: 'attacker', version: 99 });
    listener.apply('token.refreshed.acme.github', forged, undefined);
    listener.apply('token.refreshed.acme.github', forged, fixedHeaders({}));
    apply('token.refreshed.acme.github', forged, stranger);
    // Our key's signature over other bytes, and our key named with a stranger's signature.
    listener.apply('token.refreshed.acme.github', forged, signedBy(testSigner, event({ version: 1 })));
    listener.apply(
      'token.refreshed.acme.github',
      forged,
      fixedHeaders({ [SIGNATURE_HEADER]: stranger.sign(forged), [SIGNER_HEADER]: testSigner.publicKey }),
    );
    listener.apply('token.refreshed.acme.github', forged, fixedHeaders({ [SIGNATURE_HEADER]: 'not-base64url!', [SIGNER_HEADER]: testSigner.publicKey }));
    expect(served()).toMatchObject({ accessToken: 'at_real', version: 1 });
    expect(await dropped()).toEqual({ unsigned: 2, untrusted: 1, bad_signature: 3, mismatch: 0, malformed: 0 });
  });

  it('trusts a listed second key (rotation), and re-signs what it caches with its own', () => {
    const { cache, apply, served } = setup();
    apply('token.refreshed.acme.github', event({ accessToken: 'at_v2', version: 2 }), rotated);
    expect(served()).toMatchObject({ accessToken: 'at_v2', version: 2 });
    const reply = cache.get('acme/github')!.reply;
    expect(reply.headers.get(SIGNER_HEADER)).toBe(testSigner.publicKey);
    expect(new SignatureVerifier([testSigner.publicKey]).verifyHeaders(reply.data, reply.headers)).toBe('ok');
  });

  it('logs dropped events at most once per reason per interval, with the count it skipped', () => {
    const { listener, clock } = setup();
    const warnings: unknown[] = [];
    const logger = (listener as unknown as { logger: Logger }).logger;
    logger.warn = (message: unknown) => void warnings.push(message);
    for (let i = 0; i < 50; i++) listener.apply('token.refreshed.acme.github', event({ accessToken: 'attacker-secret', version: 99 }), undefined);
    expect(warnings).toHaveLength(1);
    clock.nowMs += 10_001;
    listener.apply('token.refreshed.acme.github', event({ accessToken: 'attacker-secret', version: 99 }), undefined);
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toMatchObject({ reason: 'unsigned', droppedSinceLastLog: 49 });
    expect(JSON.stringify(warnings)).not.toContain('attacker-secret');
  });
});
