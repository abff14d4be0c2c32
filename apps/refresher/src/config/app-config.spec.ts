import { nkeys } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { loadAuditConfig } from '../../../audit/src/config/audit-config.js';
import { loadConfig } from './app-config.js';

const seed = new TextDecoder().decode(nkeys.createUser().getSeed());

describe('NATS settings of the refresher and the audit app (@tokenkeeper/nats)', () => {
  it('is the same rule in the refresher and the audit app, with messages naming variables only', () => {
    const env = { NATS_NKEY_SEED: seed, NATS_INBOX_PREFIX: '_INBOX_svc', REPLY_SUBJECT_PREFIXES: '_INBOX' };
    const refresher = loadConfig(env);
    const audit = loadAuditConfig(env);
    for (const config of [refresher, audit]) {
      expect(config.nats.auth.kind).toBe('nkey');
      expect(config.nats.inboxPrefix).toBe('_INBOX_svc');
      expect(config.replySubjectPrefixes).toEqual(['_INBOX']);
    }
    expect(loadConfig({}).replySubjectPrefixes).toEqual(['_INBOX']);
    const bad = { NATS_NKEY_SEED: 'SUxhunter2', REPLY_SUBJECT_PREFIXES: 'token.refreshed' };
    for (const load of [loadConfig, loadAuditConfig]) {
      let message = '';
      try {
        load(bad);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toContain('NATS_NKEY_SEED:');
      expect(message).toContain('REPLY_SUBJECT_PREFIXES:');
      expect(message).not.toContain('hunter2');
      expect(message).not.toContain('token.refreshed');
    }
  });
});

describe('WEBHOOK_ALLOWED_NETWORKS', () => {
  it('takes CIDRs and names every bad entry at once', () => {
    expect(loadConfig({ WEBHOOK_ALLOWED_NETWORKS: '127.0.0.0/8, fd00::/8' }).webhooks.allowedNetworks).toEqual([
      '127.0.0.0/8',
      'fd00::/8',
    ]);
    expect(loadConfig({}).webhooks.allowedNetworks).toEqual([]);
    expect(() => loadConfig({ WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1,10.0.0.0/33,example.com/8' })).toThrow(
      /entry #1 is not a CIDR[\s\S]*entry #2[\s\S]*entry #3/,
    );
  });
});
