import type { NatsConnection } from '@nats-io/transport-node';
import { TOKEN_EVENT_KINDS } from '@tokenkeeper/contracts';
import { describe, expect, it } from 'vitest';
import { resolveOptions } from './token-client.options.js';
import { TokenClient } from './token.client.js';

const perKind = (...entries: string[]) =>
  entries.flatMap((entry) => TOKEN_EVENT_KINDS.map((kind) => `token.${kind}.${entry}`));

describe('TokenClient scopes', () => {
  it('subscribes exactly to each scope entry per event type, nothing broader', () => {
    expect(resolveOptions({ scopes: ['*.twitter'] }).subjects).toEqual(perKind('*.twitter'));
    expect(resolveOptions({ scopes: ['*.twitter', 'acme.*'] }).subjects).toEqual(perKind('*.twitter', 'acme.*'));
  });

  it('subscribes once where tenants, connections and scopes overlap', () => {
    const resolved = resolveOptions({
      tenants: ['acme', 'globex'],
      connections: [
        { tenant: 'initech', connection: 'twitter' },
        { tenant: 'initech', connection: 'github' },
      ],
      scopes: ['*.twitter', 'acme.*', 'globex.slack'],
    });
    expect(resolved.subjects).toEqual([...perKind('*.twitter', 'acme.*'), ...perKind('globex.>', 'initech.github')]);
  });

  it('refuses a malformed scope entry at construction, naming it', () => {
    for (const bad of ['twitter', '*.>', 'a.b.c', '>.*'])
      expect(() => new TokenClient({ scopes: [bad] }), bad).toThrow(
        new RegExp(`scopes: scope entry "${bad.replace(/[.*]/g, '\\$&')}"`),
      );
    expect(() => new TokenClient({ scopes: [] })).toThrow(/`tenants`, `connections` or `scopes`/);
  });

  it('serves what the scope covers and nothing else', () => {
    const client = new TokenClient({
      scopes: ['*.twitter', 'acme.*'],
      connections: [{ tenant: 'globex', connection: 'jira' }],
    });
    expect(client.serves({ tenant: 'acme', connection: 'github' })).toBe(true);
    expect(client.serves({ tenant: 'globex', connection: 'twitter' })).toBe(true);
    expect(client.serves({ tenant: 'globex', connection: 'jira' })).toBe(true);
    expect(client.serves({ tenant: 'globex', connection: 'github' })).toBe(false);
    expect(client.serves({ tenant: 'initech', connection: 'twitter-ads' })).toBe(false);
  });

  it('refuses getToken outside its scope with bad_request and sends nothing', async () => {
    // A connection that records what would go on the wire (start() is not needed for the miss path).
    const sent: string[] = [];
    const nc = {
      request: (subject: string) => {
        sent.push(subject);
        return Promise.reject(new Error('no server here'));
      },
    } as unknown as NatsConnection;
    const client = new TokenClient({ nc, scopes: ['*.twitter', 'acme.*'] });
    for (const key of [
      { tenant: 'globex', connection: 'github' },
      { tenant: 'initech', connection: 'slack' },
    ]) {
      await expect(client.getToken(key)).rejects.toMatchObject({ code: 'bad_request' });
      await expect(client.getAccessToken(key)).rejects.toThrow(/not served by this client/);
      await expect(client.rejectToken(key, 1)).rejects.toMatchObject({ code: 'bad_request' });
    }
    expect(sent).toEqual([]);
    expect(client.stats.fallbacks).toBe(0);
    // Inside the scope the request does go out, for any tenant.
    await client.getToken({ tenant: 'globex', connection: 'twitter' }).catch(() => undefined);
    await client.getToken({ tenant: 'acme', connection: 'github' }).catch(() => undefined);
    expect(sent).toEqual(['token.get.globex.twitter', 'token.get.acme.github']);
  });
});
