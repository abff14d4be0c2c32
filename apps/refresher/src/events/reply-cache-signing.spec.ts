import { EventSigner, SignatureVerifier, type TokenView } from '@tokenkeeper/contracts';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeReply, T0, testSigner } from '../../test/unit/core-fakes.js';
import { ReplyCache } from './reply-cache.js';

const view = (version: number): TokenView => ({
  tenant: 'acme', connection: 'github', provider: 'sandbox', accessToken: `at_v${version}`, tokenType: 'Bearer', expiresAt: null, version,
});
const ID = 'acme/github';

describe('ReplyCache: a version is signed once, eagerly only for credentials token.get asked for (issue 13)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('signs a version nobody asked for on its first read, then never again', () => {
    const sign = vi.spyOn(EventSigner.prototype, 'sign');
    const cache = new ReplyCache(10, testSigner);
    cache.put(view(1), T0);
    cache.observe(ID, view(2), T0, Number.POSITIVE_INFINITY);
    expect(sign).not.toHaveBeenCalled();
    const reply = cache.get(ID)!.reply;
    expect(decodeReply(reply).token).toMatchObject({ version: 2, accessToken: 'at_v2' });
    expect(new SignatureVerifier([testSigner.publicKey]).verifyHeaders(reply.data, reply.headers)).toBe('ok');
    expect(cache.get(ID)!.reply).toBe(reply);
    expect(sign).toHaveBeenCalledTimes(1);
  });

  it('signs the next versions of an asked-for credential when they are cached, ready for the next request', () => {
    const cache = new ReplyCache(10, testSigner);
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
