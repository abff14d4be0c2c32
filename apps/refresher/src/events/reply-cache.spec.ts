import type { TokenView } from '@tokenkeeper/contracts';
import { describe, expect, it } from 'vitest';
import { T0, testSigner } from '../../test/unit/core-fakes.js';
import { ReplyCache } from './reply-cache.js';

const view = (version: number, over: Partial<TokenView> = {}): TokenView => ({
  tenant: 'acme',
  connection: 'github',
  provider: 'sandbox',
  accessToken: `at_v${version}`,
  tokenType: 'Bearer',
  expiresAt: null,
  version,
  ...over,
});
const ID = 'acme/github';

describe('ReplyCache: nothing at or below an evicted version comes back', () => {
  it('a get that read v5 before a revoke (v6) cannot cache v5 after it', () => {
    const cache = new ReplyCache(10, testSigner);
    cache.put(view(5), T0);
    cache.evict(ID, 6);
    expect(cache.get(ID)).toBeUndefined();
    // The slow path's late put of what it read before the revoke.
    expect(cache.put(view(5), T0)).toBeUndefined();
    expect(cache.get(ID)).toBeUndefined();
  });

  it('also when the revoke arrived while nothing was cached, and for an equal version', () => {
    const cache = new ReplyCache(10, testSigner);
    cache.evict(ID, 6);
    expect(cache.put(view(5), T0)).toBeUndefined();
    expect(cache.put(view(6), T0)).toBeUndefined();
    cache.observe(ID, view(6), T0, Number.POSITIVE_INFINITY);
    expect(cache.get(ID)).toBeUndefined();
  });

  it('a newer version (re-registration) is cached again, and the marks stay bounded', () => {
    const cache = new ReplyCache(2, testSigner);
    cache.evict(ID, 6);
    expect(cache.put(view(7), T0)?.version).toBe(7);
    expect(cache.get(ID)?.version).toBe(7);
    for (let i = 0; i < 5; i++) cache.evict(`acme/c${i}`, 1);
    // The oldest marks are forgotten like the oldest entries (bounded like the cache).
    expect(cache.put(view(1, { connection: 'c0' }), T0)?.version).toBe(1);
    expect(cache.put(view(1, { connection: 'c4' }), T0)).toBeUndefined();
  });

  it('the marks survive clear() (a reconnect drops replies, not what is known dead)', () => {
    const cache = new ReplyCache(10, testSigner);
    cache.evict(ID, 6);
    cache.clear();
    expect(cache.put(view(5), T0)).toBeUndefined();
  });
});
