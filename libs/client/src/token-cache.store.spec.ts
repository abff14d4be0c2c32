import { describe, expect, it } from 'vitest';
import { tokenView } from '../test/fake-refresher.fixture.js';
import { FRESH, REAUTH, REVOKED, TokenCache } from './token-cache.store.js';
import { DEFAULT_MAX_ENTRIES, emptyStats, resolveOptions } from './token-client.options.js';
import { parseTokenEvent, type ValidatedToken, validateTokenView } from '@tokenkeeper/contracts';

const key = { tenant: 'acme', connection: 'github' };
const id = 'acme/github';

function token(version: number, ttlSeconds: number | null = 3600): ValidatedToken {
  return validateTokenView(tokenView(key, version, ttlSeconds)) as ValidatedToken;
}

/** The version rules alone, without NATS: what the integration specs rely on. */
describe('TokenCache version rules', () => {
  it('keeps the highest version of pushed tokens', () => {
    const cache = new TokenCache(Infinity, emptyStats());
    expect(cache.applyPushedToken(id, token(2), 0)).toBe(true);
    expect(cache.applyPushedToken(id, token(2), 0)).toBe(false);
    expect(cache.applyPushedToken(id, token(1), 0)).toBe(false);
    expect(cache.applyPushedToken(id, token(3), 0)).toBe(true);
    expect(cache.map.get(id)).toMatchObject({ version: 3, state: FRESH });
  });

  it('revocation applies at an equal version and is lifted only by a newer token', () => {
    const cache = new TokenCache(Infinity, emptyStats());
    cache.applyPushedToken(id, token(4), 0);
    expect(cache.applyRevoked(id, 3, false)).toBe(false);
    expect(cache.applyRevoked(id, 4, false)).toBe(true);
    expect(cache.applyRevoked(id, 4, false)).toBe(false);
    expect(cache.map.get(id)).toMatchObject({ state: REVOKED, accessToken: '', view: null });
    expect(cache.applyPushedToken(id, token(4), 0)).toBe(false);
    expect(cache.applyAnswer(id, token(4), 0, cache.changes)).toBe('revoked');
    expect(cache.applyPushedToken(id, token(5), 0)).toBe(true);
    expect(cache.map.get(id)?.state).toBe(FRESH);
  });

  it('reauth_required marks the entry; only a newer token clears it', () => {
    const cache = new TokenCache(Infinity, emptyStats());
    cache.applyPushedToken(id, token(1), 0);
    expect(cache.applyFailed(id, 1, 'failing', false)).toBeNull();
    expect(cache.applyFailed(id, 1, 'reauth_required', false)).toBe(true);
    expect(cache.applyFailed(id, 1, 'reauth_required', false)).toBe(false);
    // An answer at the same version is handed to that caller but the mark stays.
    expect(cache.applyAnswer(id, token(1), 0, cache.changes)).toMatchObject({ version: 1 });
    expect(cache.map.get(id)?.state).toBe(REAUTH);
    expect(cache.applyFailed(id, 1, 'revoked', false)).toBe(true);
    expect(cache.map.get(id)?.state).toBe(REVOKED);
  });

  it('a token.get answer at the cached version re-stamps the epoch; an older one loses to an event heard after it was sent', () => {
    const cache = new TokenCache(Infinity, emptyStats());
    const sentBefore = cache.changes;
    cache.applyPushedToken(id, token(3), 0);
    expect(cache.applyAnswer(id, token(3), 1, sentBefore)).toMatchObject({ version: 3 });
    expect(cache.map.get(id)?.epoch).toBe(1);
    expect(cache.applyAnswer(id, token(2), 2, sentBefore)).toMatchObject({ version: 3 });
    expect(cache.map.get(id)?.epoch).toBe(1);
  });

  it('an older token.get answer sent after the last change replaces the entry (a restored database), and events above it apply', () => {
    const cache = new TokenCache(Infinity, emptyStats());
    cache.applyPushedToken(id, token(9), 0);
    expect(cache.applyAnswer(id, token(3), 0, cache.changes)).toMatchObject({ version: 3 });
    expect(cache.map.get(id)).toMatchObject({ version: 3, state: FRESH });
    expect(cache.applyPushedToken(id, token(3), 0)).toBe(false);
    expect(cache.applyPushedToken(id, token(4), 0)).toBe(true);
    // A tombstone is not lifted by a lower version's word.
    expect(cache.applyRevoked(id, 4, false)).toBe(true);
    expect(cache.applyAnswer(id, token(2), 0, cache.changes)).toBe('revoked');
  });

  it('keeps entries for revoked and reauth credentials only when it knows or is fetching them; a revoke of any other leaves a bounded mark', () => {
    const cache = new TokenCache(Infinity, emptyStats());
    expect(cache.applyRevoked('other/x', 4, false)).toBe(true);
    expect(cache.applyRevoked('other/x', 4, false)).toBe(false);
    expect(cache.applyFailed('other/y', 2, 'reauth_required', false)).toBeNull();
    expect(cache.applyFailed('other/z', 2, 'revoked', false)).toBe(true);
    expect(cache.size).toBe(0);
    expect(cache.tombstones).toBe(2);
    // The mark refuses the revoked version and older, pushed or answered; a newer one lifts it.
    expect(cache.applyPushedToken('other/x', token(4), 0)).toBe(false);
    expect(cache.applyAnswer('other/x', token(3), 0, cache.changes)).toBe('revoked');
    expect(cache.applyPushedToken('other/x', token(5), 0)).toBe(true);
    expect(cache.mark('other/x')).toBeUndefined();
    // A token.get in flight: the tombstone guards its answer against resurrecting the revoked token.
    expect(cache.applyRevoked(id, 4, true)).toBe(true);
    expect(cache.applyAnswer(id, token(4), 0, cache.changes)).toBe('revoked');
    // A known credential gets its marker whatever the flag says.
    cache.applyPushedToken('known/x', token(1), 0);
    expect(cache.applyRevoked('known/x', 1, false)).toBe(true);
    expect(cache.map.get('known/x')?.state).toBe(REVOKED);
  });

  it('an `ask` mark (token.get said revoked or not_found) refuses every pushed token until a verified answer', () => {
    const cache = new TokenCache(Infinity, emptyStats());
    cache.askFirst('gone/x');
    expect(cache.applyPushedToken('gone/x', token(1_000), 0)).toBe(false);
    // A revoke heard later is more precise and replaces it.
    expect(cache.applyRevoked('gone/x', 3, false)).toBe(true);
    expect(cache.mark('gone/x')).toEqual({ version: 3, kind: 'revoked' });
    cache.askFirst('gone/x');
    expect(cache.mark('gone/x')?.kind).toBe('revoked');
    // A token.get in flight turns the mark into a cache tombstone, keeping the revoke's version.
    expect(cache.applyFailed('gone/x', 2, 'reauth_required', true)).toBe(true);
    expect(cache.map.get('gone/x')).toMatchObject({ state: REVOKED, version: 3 });
    expect(cache.applyAnswer('gone/x', token(3), 0, cache.changes)).toBe('revoked');
    cache.askFirst('gone/y');
    expect(cache.applyAnswer('gone/y', token(1), 0, cache.changes)).toMatchObject({ version: 1 });
    expect(cache.tombstones).toBe(0);
    expect(cache.size).toBe(2);
  });

  it('bounds its marks (LRU, maxTombstones) and keeps the version of an entry the maxEntries bound drops', () => {
    const cache = new TokenCache(2, emptyStats(), 3);
    for (let i = 0; i < 10; i++) cache.applyRevoked(`t/r${i}`, 1, false);
    expect(cache.tombstones).toBe(3);
    cache.applyPushedToken('t/a', token(7), 0);
    cache.applyPushedToken('t/b', token(1), 0);
    cache.applyPushedToken('t/c', token(1), 0);
    expect(cache.map.has('t/a')).toBe(false);
    expect(cache.mark('t/a')).toEqual({ version: 7, kind: 'seen' });
    expect(cache.applyPushedToken('t/a', token(6), 0)).toBe(false);
  });

  it('is bounded by default to 10,000 entries', () => {
    const stats = emptyStats();
    const cache = new TokenCache(resolveOptions({ tenants: ['acme'] }).maxEntries, stats);
    for (let i = 0; i < 10_050; i++) cache.applyPushedToken(`acme/c${i}`, token(1), 0);
    expect(cache.size).toBe(DEFAULT_MAX_ENTRIES);
    expect(stats.evictions).toBe(50);
    expect(cache.map.has('acme/c0')).toBe(false);
    expect(cache.map.has('acme/c10049')).toBe(true);
  });

  it('stores expiry as epoch ms, Infinity for tokens without one', () => {
    expect(token(1, null).expiresAtMs).toBe(Infinity);
    expect(token(1, 60).expiresAtMs).toBeGreaterThan(Date.now());
  });

  it('evicts in LRU order and counts evictions', () => {
    const stats = emptyStats();
    const cache = new TokenCache(3, stats);
    for (const t of ['a', 'b', 'c']) cache.applyPushedToken(`${t}/x`, token(1), 0);
    cache.touch('a/x', cache.map.get('a/x')!);
    cache.applyPushedToken('d/x', token(1), 0);
    expect([...cache.map.keys()]).toEqual(['c/x', 'a/x', 'd/x']);
    expect(stats.evictions).toBe(1);
  });

  it('keeps the by-tenant index of the hot path in step with inserts, evictions and clear', () => {
    const cache = new TokenCache(2, emptyStats());
    cache.applyPushedToken('t1/a', token(1), 0);
    cache.applyRevoked('t1/b', 3, true);
    expect(cache.byTenant.get('t1')?.get('a')).toBe(cache.map.get('t1/a'));
    expect(cache.byTenant.get('t1')?.get('b')).toBe(cache.map.get('t1/b'));
    cache.applyPushedToken('t1/a', token(2), 0);
    expect(cache.byTenant.get('t1')?.get('a')?.version).toBe(2);
    cache.applyPushedToken('t2/c', token(1), 0);
    expect(cache.byTenant.get('t1')?.has('a')).toBe(false);
    expect(cache.byTenant.get('t2')?.get('c')).toBe(cache.map.get('t2/c'));
    cache.applyPushedToken('t3/d', token(1), 0);
    expect(cache.byTenant.has('t1')).toBe(false);
    cache.clear();
    expect(cache.byTenant.size).toBe(0);
  });
});

describe('parseTokenEvent', () => {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

  it('takes identity from the subject and refuses a payload naming another credential', () => {
    const view = tokenView(key, 1);
    expect(parseTokenEvent('token.refreshed.acme.github', enc(view))).toMatchObject({ kind: 'refreshed' });
    expect(parseTokenEvent('token.refreshed.acme.slack', enc(view))).toBeNull();
    expect(parseTokenEvent('token.exploded.acme.github', enc(view))).toBeNull();
  });

  it('rejects wrong types and drops unknown fields', () => {
    const view = tokenView(key, 1);
    expect(parseTokenEvent('token.refreshed.acme.github', enc({ ...view, expiresAt: 'soon' }))).toBeNull();
    expect(parseTokenEvent('token.revoked.acme.github', enc({ ...key, version: -1 }))).toBeNull();
    expect(parseTokenEvent('token.failed.acme.github', enc({ ...key, version: 1, status: 'weird' }))).toBeNull();
    const parsed = parseTokenEvent('token.registered.acme.github', enc({ ...view, eventId: 'e', extra: 1 }));
    expect(parsed?.kind === 'registered' && Object.keys(parsed.token.view)).not.toContain('eventId');
  });
});
