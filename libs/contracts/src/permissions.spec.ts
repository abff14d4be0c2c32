import { describe, expect, it } from 'vitest';
import { authzUser, authzUsers, auditConsumerApi, defaultUserName, inboxPrefixFor, rolePermissions, type AuthzRole } from './permissions.js';

const ROLES: AuthzRole[] = [
  { kind: 'refresher' },
  { kind: 'audit' },
  { kind: 'operator' },
  { kind: 'tenant-admin', tenant: 'acme' },
  { kind: 'consumer', tenant: 'acme' },
  { kind: 'consumer', tenant: 'acme', service: 'billing', connections: ['github'] },
];

describe('permission model (SPEC §11)', () => {
  it('gives every role its own inbox and nobody _INBOX.>, $JS.API.> or a catch-all', () => {
    for (const role of ROLES) {
      const user = authzUser(role);
      expect(user.inboxPrefix).toBe(inboxPrefixFor(defaultUserName(role)));
      expect(user.permissions.subscribe).toContain(`${user.inboxPrefix}.>`);
      const all = [...user.permissions.publish, ...user.permissions.subscribe];
      for (const forbidden of ['_INBOX.>', '$JS.API.>', '$JS.>', '>', 'token.>', 'token.*.acme.>', 'token.*.*.*']) {
        expect(all, `${user.name}: ${forbidden}`).not.toContain(forbidden);
      }
    }
  });

  it('lets only the two services answer requests', () => {
    expect(ROLES.filter((r) => rolePermissions(r, '_INBOX_x').allowResponses).map((r) => r.kind)).toEqual(['refresher', 'audit']);
  });

  it('keeps a consumer to its tenant (and connections) and names event types one by one', () => {
    expect(rolePermissions({ kind: 'consumer', tenant: 'acme' }, '_INBOX_svc-acme')).toEqual({
      publish: ['token.get.acme.>'],
      subscribe: ['token.refreshed.acme.>', 'token.registered.acme.>', 'token.failed.acme.>', 'token.revoked.acme.>', '_INBOX_svc-acme.>'],
      allowResponses: false,
    });
    const limited = rolePermissions({ kind: 'consumer', tenant: 'acme', connections: ['github', 'slack'] }, '_INBOX_s');
    expect(limited.publish).toEqual(['token.get.acme.github', 'token.get.acme.slack']);
    expect(limited.subscribe).toHaveLength(9);
  });

  it('gives a tenant admin the control plane and audit of its tenant only', () => {
    const { publish, subscribe } = rolePermissions({ kind: 'tenant-admin', tenant: 'acme' }, '_INBOX_admin-acme');
    expect(publish).toEqual([
      'tokenkeeper.admin.register.acme.*',
      'tokenkeeper.admin.refresh.acme.*',
      'tokenkeeper.admin.revoke.acme.*',
      'tokenkeeper.admin.describe.acme.*',
      'tokenkeeper.admin.connect.acme.*',
      'tokenkeeper.admin.list.acme',
      'audit.query.acme',
    ]);
    expect(subscribe).toEqual(['_INBOX_admin-acme.>']);
  });

  it('names the JetStream API of TOKEN_AUDIT (no update: its settings are the operator’s) and of the audit app’s durable consumer only', () => {
    expect(rolePermissions({ kind: 'refresher' }, '_INBOX_r').publish.filter((s) => s.startsWith('$JS'))).toEqual([
      '$JS.API.INFO',
      '$JS.API.STREAM.INFO.TOKEN_AUDIT',
      '$JS.API.STREAM.CREATE.TOKEN_AUDIT',
    ]);
    expect(rolePermissions({ kind: 'audit', consumerName: 'audit-2' }, '_INBOX_a').publish).toEqual(auditConsumerApi('audit-2'));
    expect(auditConsumerApi('c')).toContain('$JS.ACK.TOKEN_AUDIT.c.>');
    expect(auditConsumerApi('c')).toContain('$JS.API.CONSUMER.MSG.NEXT.TOKEN_AUDIT.c');
  });

  it('refuses names that would become wildcards or separators, and duplicate users', () => {
    expect(() => authzUser({ kind: 'consumer', tenant: 'ac.me' })).toThrow(RangeError);
    expect(() => authzUser({ kind: 'consumer', tenant: '*' })).toThrow(RangeError);
    expect(() => authzUser({ kind: 'consumer', tenant: 'acme', connections: ['>'] })).toThrow(RangeError);
    expect(() => authzUser({ kind: 'audit', consumerName: 'a.b' })).toThrow(RangeError);
    expect(() => authzUser({ kind: 'operator' }, 'ops.1')).toThrow(RangeError);
    expect(() => authzUsers([{ kind: 'operator' }, { role: { kind: 'refresher' }, name: 'operator' }])).toThrow(/share the user name/);
  });
});
