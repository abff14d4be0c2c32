import { describe, expect, it } from 'vitest';
import { ConsumerScope, parseScopeEntry } from './consumer-scope.js';

const key = (tenant: string, connection: string) => ({ tenant, connection });

describe('consumer scope', () => {
  it('parses <tenant>.<connection> with a name or * on each side, and nothing else', () => {
    expect(parseScopeEntry('*.twitter')).toEqual({ tenant: '*', connection: 'twitter' });
    expect(parseScopeEntry('acme.*')).toEqual({ tenant: 'acme', connection: '*' });
    expect(parseScopeEntry('*.*')).toEqual({ tenant: '*', connection: '*' });
    for (const bad of ['', 'acme', 'a.b.c', '>.x', 'x.>', 'a*.b', '.b', 'a.', 'a b.c', 7, null])
      expect(parseScopeEntry(bad), String(bad)).toBeNull();
    expect(() => ConsumerScope.parse(['*.twitter', 'nope'])).toThrow(/"nope"/);
  });

  it('covers every tenant of a connection, every connection of a tenant, single credentials, or all', () => {
    const scope = ConsumerScope.parse(['*.twitter', 'acme.*', 'globex.github']);
    expect(scope.covers(key('acme', 'github'))).toBe(true);
    expect(scope.covers(key('initech', 'twitter'))).toBe(true);
    expect(scope.covers(key('globex', 'twitter'))).toBe(true);
    expect(scope.covers(key('globex', 'github'))).toBe(true);
    expect(scope.covers(key('globex', 'slack'))).toBe(false);
    expect(scope.covers(key('initech', 'github'))).toBe(false);
    // Names are compared whole: no prefix or case folding.
    expect(scope.covers(key('initech', 'twitter2'))).toBe(false);
    expect(scope.covers(key('ACME', 'github'))).toBe(false);
    expect(scope.coversTenant('acme')).toBe(true);
    expect(scope.coversTenant('globex')).toBe(false);

    const all = ConsumerScope.parse(['*.*']);
    expect(all.covers(key('anyone', 'anything'))).toBe(true);
    expect(all.coversTenant('anyone')).toBe(true);
    expect(ConsumerScope.parse(['acme.github']).covers(key('acme', 'slack'))).toBe(false);
  });

  it('drops duplicate entries and entries a broader one covers', () => {
    const texts = (s: ConsumerScope) => s.entries.map((e) => `${e.tenant}.${e.connection}`);
    expect(texts(ConsumerScope.parse(['*.twitter', 'acme.twitter', '*.twitter', 'globex.github']))).toEqual([
      '*.twitter',
      'globex.github',
    ]);
    expect(texts(ConsumerScope.parse(['acme.github', 'acme.*']))).toEqual(['acme.*']);
    expect(texts(ConsumerScope.parse(['acme.*', '*.*', '*.twitter']))).toEqual(['*.*']);
  });
});
