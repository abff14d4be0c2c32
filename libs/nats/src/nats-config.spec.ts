import { inspect } from 'node:util';
import { nkeys } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { natsConfigFrom, natsEnvShape, replySubjectPrefixesFrom, withOwnInbox } from './nats-config.js';
import { natsConnectionOptions } from './nats-connection.js';
import { parseServers, redactServers, redactUrl } from './nats-url.js';

const schema = z.object(natsEnvShape);
function parse(env: Record<string, string>) {
  const problems: string[] = [];
  const config = natsConfigFrom(schema.parse(env), problems);
  return { config, problems };
}

const seed = new TextDecoder().decode(nkeys.createUser().getSeed());

describe('NATS settings from the environment', () => {
  it('reads an nkey seed as a secret and an inbox prefix', () => {
    const { config, problems } = parse({ NATS_NKEY_SEED: seed, NATS_INBOX_PREFIX: '_INBOX_billing' });
    expect(problems).toEqual([]);
    expect(config.auth.kind).toBe('nkey');
    expect(config.inboxPrefix).toBe('_INBOX_billing');
    expect(inspect(config, { depth: 5 })).not.toContain(seed);
    expect(JSON.stringify(config)).not.toContain(seed);
    const options = natsConnectionOptions(config, 'test');
    expect(options.inboxPrefix).toBe('_INBOX_billing');
    expect(typeof options.authenticator).toBe('function');
  });

  it('names a bad seed, a bad inbox prefix and a second auth kind without printing values', () => {
    const badSeed = 'SUNOTAREALSEEDhunter2';
    const { problems } = parse({ NATS_NKEY_SEED: badSeed, NATS_INBOX_PREFIX: '_INBOX.>', NATS_TOKEN: 'tok-hunter2' });
    const text = problems.join('\n');
    expect(text).toContain('NATS_NKEY_SEED:');
    expect(text).toContain('NATS_INBOX_PREFIX:');
    expect(text).toContain('choose one way to authenticate');
    for (const value of [badSeed, 'hunter2', '_INBOX.>']) expect(text).not.toContain(value);
    // A public key (U…) is not a seed.
    const publicKey = nkeys.createUser().getPublicKey();
    expect(parse({ NATS_NKEY_SEED: publicKey }).problems.join()).toContain('NATS_NKEY_SEED');
    expect(parse({ NATS_INBOX_PREFIX: 'has space' }).problems.join()).toContain('NATS_INBOX_PREFIX');
    expect(parse({ NATS_INBOX_PREFIX: '_INBOX..x' }).problems.join()).toContain('NATS_INBOX_PREFIX');
  });

  it('takes credentials out of NATS_URL, so servers can be logged', () => {
    const { config, problems } = parse({ NATS_URL: 'nats://svc:p%40ss@a:4222,nats://b:4222' });
    expect(problems).toEqual([]);
    expect(config.servers).toEqual(['nats://a:4222', 'nats://b:4222']);
    expect(config.auth).toMatchObject({ kind: 'userpass', user: 'svc' });
    expect(config.auth.kind === 'userpass' && config.auth.pass.reveal()).toBe('p@ss');
    // Explicit variables win over the URL.
    expect(parse({ NATS_URL: 'nats://tok@a:4222', NATS_TOKEN: 'other' }).config.auth).toMatchObject({ kind: 'token' });
    expect(parseServers('a:4222')?.servers).toEqual(['a:4222']);
    expect(parse({ NATS_URL: 'http://a:4222' }).problems).toEqual([expect.stringContaining('NATS_URL:')]);
  });

  it('redacts user info wherever a URL is printed', () => {
    expect(redactUrl('nats://u:p@h:4222,tls://t@h2:4222')).toBe('nats://***@h:4222,tls://***@h2:4222');
    expect(redactServers(['nats://u:p@h:4222', 'h:1'])).toEqual(['nats://***@h:4222', 'h:1']);
    expect(redactUrl('u:p@h:4222')).toBe('***@h:4222');
  });

  it('reads REPLY_SUBJECT_PREFIXES and refuses prefixes that cover the services own subjects', () => {
    const problems: string[] = [];
    expect(replySubjectPrefixesFrom({ REPLY_SUBJECT_PREFIXES: '_INBOX, _R_' }, problems)).toEqual(['_INBOX', '_R_']);
    expect(problems).toEqual([]);
    for (const bad of ['token.', 'audit', '$JS.API', '', 'a.>']) {
      const found: string[] = [];
      replySubjectPrefixesFrom({ REPLY_SUBJECT_PREFIXES: bad }, found);
      expect(found, bad).toEqual([expect.stringContaining('REPLY_SUBJECT_PREFIXES:')]);
    }
  });

  it('gives a service an inbox of its own: NATS_INBOX_PREFIX, else a private one under _INBOX', () => {
    const base = { servers: ['nats://127.0.0.1:4222'], auth: { kind: 'none' as const } };
    expect(withOwnInbox({ ...base, inboxPrefix: '_INBOX_refresher' }).inboxPrefix).toBe('_INBOX_refresher');
    for (const shared of [undefined, '_INBOX']) {
      const own = withOwnInbox({ ...base, ...(shared ? { inboxPrefix: shared } : {}) }).inboxPrefix;
      expect(own).toMatch(/^_INBOX\.[A-Za-z0-9]{22}$/);
      expect(withOwnInbox(base).inboxPrefix).not.toBe(own);
    }
  });
});
