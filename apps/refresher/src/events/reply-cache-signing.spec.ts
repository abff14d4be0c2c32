import { EventSigner, SIGNED_AT_HEADER, SignatureVerifier, type TokenView } from '@tokenkeeper/contracts';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeReply, T0, testSigner } from '../../test/unit/core-fakes.js';
import { ReplyCache } from './reply-cache.js';

const view = (version: number): TokenView => ({
  tenant: 'acme',
  connection: 'github',
  provider: 'sandbox',
  accessToken: `at_v${version}`,
  tokenType: 'Bearer',
  expiresAt: null,
  version,
});
const ID = 'acme/github';

describe('ReplyCache: a version is signed once, eagerly only for credentials token.get asked for', () => {
  afterEach(() => vi.restoreAllMocks());

  it('signs a version nobody asked for on its first read, then never again', () => {
    const sign = vi.spyOn(EventSigner.prototype, 'sign');
    const cache = new ReplyCache(10, testSigner, { clock: () => T0 });
    cache.put(view(1), T0);
    cache.observe(ID, view(2), T0, Number.POSITIVE_INFINITY);
    expect(sign).not.toHaveBeenCalled();
    const reply = cache.get(ID)!.reply;
    expect(decodeReply(reply).token).toMatchObject({ version: 2, accessToken: 'at_v2' });
    // Signed over the request's subject: the reply answers token.get for this credential only.
    const verifier = new SignatureVerifier([testSigner.publicKey]);
    expect(verifier.verify('token.get.acme.github', reply.data, reply.headers, T0)).toBe('ok');
    expect(verifier.verify('token.get.acme.other', reply.data, reply.headers, T0)).toBe('bad_signature');
    expect(cache.get(ID)!.reply).toBe(reply);
    expect(sign).toHaveBeenCalledTimes(1);
  });

  it('signs the next versions of an asked-for credential when they are cached, ready for the next request', () => {
    const cache = new ReplyCache(10, testSigner, { clock: () => T0 });
    cache.put(view(1), T0);
    void cache.get(ID)!.reply;
    const sign = vi.spyOn(EventSigner.prototype, 'sign');
    cache.put(view(2), T0);
    cache.observe(ID, view(3), T0, Number.POSITIVE_INFINITY);
    expect(sign).toHaveBeenCalledTimes(2);
    void cache.get(ID)!.reply;
    expect(sign).toHaveBeenCalledTimes(2);
  });
});

describe('ReplyCache: a cached reply is re-signed before it ages out', () => {
  afterEach(() => vi.restoreAllMocks());

  it('re-signs once its signature is a third of the max age old, once, with the same bytes', () => {
    let now = T0;
    const cache = new ReplyCache(10, testSigner, { clock: () => now, maxAgeSeconds: 900 });
    expect(cache.resignAfterMs).toBe(300_000);
    cache.put(view(1), T0);
    const first = cache.get(ID)!.replyAt(now);
    expect(first.headers.get(SIGNED_AT_HEADER)).toBe(String(T0));
    const sign = vi.spyOn(EventSigner.prototype, 'sign');

    now = T0 + 299_999;
    expect(cache.get(ID)!.replyAt(now)).toBe(first);
    expect(sign).not.toHaveBeenCalled();

    now = T0 + 300_000;
    const second = cache.get(ID)!.replyAt(now);
    expect(second).not.toBe(first);
    expect(second.headers.get(SIGNED_AT_HEADER)).toBe(String(now));
    expect(Buffer.from(second.data).equals(Buffer.from(first.data))).toBe(true);
    expect(
      new SignatureVerifier([testSigner.publicKey]).verify('token.get.acme.github', second.data, second.headers, now),
    ).toBe('ok');
    // Then once per re-sign age again, not once per request.
    for (let i = 0; i < 100; i++) expect(cache.get(ID)!.replyAt(now + i)).toBe(second);
    expect(sign).toHaveBeenCalledTimes(1);
    // The `reply` getter reads the cache's clock.
    now += 300_000;
    expect(cache.get(ID)!.reply.headers.get(SIGNED_AT_HEADER)).toBe(String(now));
    expect(sign).toHaveBeenCalledTimes(2);
  });

  it('takes the re-sign age from its own max-age setting', () => {
    let now = T0;
    const cache = new ReplyCache(10, testSigner, { clock: () => now, maxAgeSeconds: 30 });
    cache.put(view(1), T0);
    const first = cache.get(ID)!.reply;
    now = T0 + 10_000;
    expect(cache.get(ID)!.reply).not.toBe(first);
    // What a reader with the same max age receives is never older than a third of it.
    const verifier = new SignatureVerifier([testSigner.publicKey], { maxAgeSeconds: 30 });
    expect(verifier.verify('token.get.acme.github', first.data, first.headers, T0 + 30_001)).toBe('too_old');
  });
});
