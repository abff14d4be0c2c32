import { describe, expect, it } from 'vitest';
import {
  authzUser,
  authzUsers,
  auditConsumerApi,
  defaultUserName,
  inboxPrefixFor,
  leafRole,
  rolePermissions,
  type AuthzRole,
} from './permissions.js';
import { TOKEN_EVENT_KINDS } from './subjects.js';

const ROLES: AuthzRole[] = [
  { kind: 'refresher' },
  { kind: 'audit' },
  { kind: 'operator' },
  { kind: 'tenant-admin', tenant: 'acme' },
  { kind: 'consumer', tenant: 'acme' },
  { kind: 'consumer', tenant: 'acme', service: 'billing', connections: ['github'] },
  { kind: 'scoped-consumer', service: 'scheduler', scope: ['*.twitter', 'acme.*', 'globex.slack'] },
  { kind: 'scoped-consumer', service: 'everything', scope: ['*.*'] },
];

describe('permission model', () => {
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
    expect(ROLES.filter((r) => rolePermissions(r, '_INBOX_x').allowResponses).map((r) => r.kind)).toEqual([
      'refresher',
      'audit',
    ]);
  });

  it('keeps a consumer to its tenant (and connections) and names event types one by one', () => {
    expect(rolePermissions({ kind: 'consumer', tenant: 'acme' }, '_INBOX_svc-acme')).toEqual({
      publish: ['token.get.acme.>'],
      subscribe: [
        'token.refreshed.acme.>',
        'token.registered.acme.>',
        'token.failed.acme.>',
        'token.revoked.acme.>',
        'token.recovered.acme.>',
        'token.expiring.acme.>',
        '_INBOX_svc-acme.>',
      ],
      allowResponses: false,
    });
    const limited = rolePermissions({ kind: 'consumer', tenant: 'acme', connections: ['github', 'slack'] }, '_INBOX_s');
    expect(limited.publish).toEqual(['token.get.acme.github', 'token.get.acme.slack']);
    expect(limited.subscribe).toHaveLength(13);
  });

  it('gives a consumer of many tenants token.get and each event type of every scope entry, with * one token wide', () => {
    const perms = rolePermissions(
      { kind: 'scoped-consumer', service: 'scheduler', scope: ['*.twitter', 'acme.*', 'globex.github'] },
      '_INBOX_scope-scheduler',
    );
    expect(perms.publish).toEqual(['token.get.*.twitter', 'token.get.acme.*', 'token.get.globex.github']);
    // Every event type the contracts name, so a kind added there is granted here too.
    const expected = ['*.twitter', 'acme.*', 'globex.github'].flatMap((entry) =>
      TOKEN_EVENT_KINDS.map((kind) => `token.${kind}.${entry}`),
    );
    expect(perms.subscribe).toEqual([...expected, '_INBOX_scope-scheduler.>']);
    expect(perms.allowResponses).toBe(false);
    for (const subject of [...perms.publish, ...perms.subscribe]) {
      expect(subject.split('.')[1], subject).not.toBe('*');
      expect(subject.includes('>') && !subject.startsWith('_INBOX_scope-scheduler.'), subject).toBe(false);
    }
    // An entry another covers adds nothing (its events would arrive twice).
    expect(
      rolePermissions({ kind: 'scoped-consumer', service: 's', scope: ['*.twitter', 'acme.twitter', 'acme.*'] }, '_I')
        .publish,
    ).toEqual(['token.get.*.twitter', 'token.get.acme.*']);
    expect(rolePermissions({ kind: 'scoped-consumer', service: 's', scope: ['*.*', 'acme.*'] }, '_I').publish).toEqual([
      'token.get.*.*',
    ]);
  });

  it('names a consumer of many tenants by its service only, apart from every tenant consumer', () => {
    const role: AuthzRole = { kind: 'scoped-consumer', service: 'scheduler', scope: ['*.twitter'] };
    expect(defaultUserName(role)).toBe('scope-scheduler');
    expect(defaultUserName({ ...role, scope: ['acme.*'] })).toBe('scope-scheduler');
    expect(defaultUserName(role)).not.toBe(
      defaultUserName({ kind: 'consumer', tenant: 'scope', service: 'scheduler' }),
    );
  });

  it('gives a leaf the union of the consumers it serves: their requests, events and inboxes, nothing else', () => {
    const billing: AuthzRole = { kind: 'consumer', tenant: 'acme', service: 'billing', connections: ['github'] };
    const others: AuthzRole[] = [
      { kind: 'consumer', tenant: 'acme' }, // all of acme: more than acme.github
      { kind: 'consumer', tenant: 'globex' },
      { kind: 'scoped-consumer', service: 'scheduler', scope: ['*.github'] },
      { kind: 'tenant-admin', tenant: 'acme' },
      { kind: 'operator' },
    ];
    const role = leafRole('eu', ['acme.github'], [billing, ...others]);
    expect(role).toEqual({
      kind: 'leaf',
      leaf: 'eu',
      scope: ['acme.github'],
      inboxPrefixes: ['_INBOX_svc-acme-billing'],
    });
    expect(defaultUserName(role)).toBe('leaf-eu');
    expect(rolePermissions(role, '_INBOX_leaf-eu')).toEqual({
      publish: ['token.get.acme.github'],
      subscribe: [...TOKEN_EVENT_KINDS.map((kind) => `token.${kind}.acme.github`), '_INBOX_svc-acme-billing.>'],
      allowResponses: false,
    });

    // A tenant pattern serves every consumer inside it, a scoped one included, and no other tenant's.
    const wide = leafRole(
      'eu',
      ['acme.*', '*.twitter'],
      [billing, ...others, { kind: 'scoped-consumer', service: 'poster', scope: ['*.twitter', 'acme.slack'] }],
    );
    expect(wide.kind === 'leaf' && wide.inboxPrefixes).toEqual([
      '_INBOX_svc-acme-billing',
      '_INBOX_svc-acme',
      '_INBOX_scope-poster',
    ]);
    const perms = rolePermissions(wide, '_INBOX_leaf-eu');
    expect(perms.publish).toEqual(['token.get.acme.*', 'token.get.*.twitter']);
    for (const subject of [...perms.publish, ...perms.subscribe]) {
      expect(subject, subject).not.toMatch(/globex|^_INBOX\.|^_INBOX_svc-globex|^_INBOX_scope-scheduler|^_INBOX_admin/);
      expect(subject.includes('>') && !subject.startsWith('_INBOX_'), subject).toBe(false);
    }
  });

  it('refuses a leaf that would serve no consumer, or whose inboxes are not _INBOX_<user>', () => {
    expect(() => leafRole('eu', ['globex.*'], [{ kind: 'consumer', tenant: 'acme' }])).toThrow(/no consumer/);
    expect(() => leafRole('eu', ['acme.github'], [{ kind: 'consumer', tenant: 'acme' }])).toThrow(/no consumer/);
    for (const inboxPrefixes of [[], ['_INBOX'], ['_INBOX_a.b'], ['_INBOX_*'], ['_INBOX_>']])
      expect(
        () => authzUser({ kind: 'leaf', leaf: 'eu', scope: ['acme.*'], inboxPrefixes }),
        JSON.stringify(inboxPrefixes),
      ).toThrow(RangeError);
    expect(() => authzUser({ kind: 'leaf', leaf: 'e.u', scope: ['acme.*'], inboxPrefixes: ['_INBOX_x'] })).toThrow(
      RangeError,
    );
  });

  it('refuses a scope that is empty, has more or fewer than two sides, or wildcards other than a whole *', () => {
    for (const scope of [
      [],
      ['twitter'],
      ['a.b.c'],
      ['*.>'],
      ['>.twitter'],
      ['a*.twitter'],
      ['acme.'],
      ['.x'],
      ['a b.c'],
    ])
      expect(() => authzUser({ kind: 'scoped-consumer', service: 's', scope }), JSON.stringify(scope)).toThrow(
        RangeError,
      );
    expect(() => authzUser({ kind: 'scoped-consumer', service: 'a.b', scope: ['*.*'] })).toThrow(RangeError);
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
      'tokenkeeper.admin.webhook.set.acme',
      'tokenkeeper.admin.webhook.delete.acme',
      'tokenkeeper.admin.webhook.list.acme',
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
    expect(rolePermissions({ kind: 'audit', consumerName: 'audit-2' }, '_INBOX_a').publish).toEqual(
      auditConsumerApi('audit-2'),
    );
    expect(auditConsumerApi('c')).toContain('$JS.ACK.TOKEN_AUDIT.c.>');
    expect(auditConsumerApi('c')).toContain('$JS.API.CONSUMER.MSG.NEXT.TOKEN_AUDIT.c');
  });

  it('refuses names that would become wildcards or separators, and duplicate users', () => {
    expect(() => authzUser({ kind: 'consumer', tenant: 'ac.me' })).toThrow(RangeError);
    expect(() => authzUser({ kind: 'consumer', tenant: '*' })).toThrow(RangeError);
    expect(() => authzUser({ kind: 'consumer', tenant: 'acme', connections: ['>'] })).toThrow(RangeError);
    expect(() => authzUser({ kind: 'audit', consumerName: 'a.b' })).toThrow(RangeError);
    expect(() => authzUser({ kind: 'operator' }, 'ops.1')).toThrow(RangeError);
    expect(() => authzUsers([{ kind: 'operator' }, { role: { kind: 'refresher' }, name: 'operator' }])).toThrow(
      /share the user name/,
    );
  });

  it('gives different roles different user names, also where tenant and service names hold - and _', () => {
    const colliding: [AuthzRole, AuthzRole][] = [
      [
        { kind: 'consumer', tenant: 'acme-billing' },
        { kind: 'consumer', tenant: 'acme', service: 'billing' },
      ],
      [
        { kind: 'tenant-admin', tenant: 'a-b' },
        { kind: 'tenant-admin', tenant: 'a_b' },
      ],
      [
        { kind: 'consumer', tenant: 'a-b', service: 'c' },
        { kind: 'consumer', tenant: 'a', service: 'b-c' },
      ],
      [
        { kind: 'consumer', tenant: 'a_', service: 'b' },
        { kind: 'consumer', tenant: 'a', service: '_b' },
      ],
    ];
    for (const [one, other] of colliding)
      expect(defaultUserName(one), JSON.stringify([one, other])).not.toBe(defaultUserName(other));
    expect(defaultUserName({ kind: 'consumer', tenant: 'acme-billing' })).toBe('svc-acme_-billing');
    expect(defaultUserName({ kind: 'consumer', tenant: 'acme', service: 'billing' })).toBe('svc-acme-billing');
    // Names without - or _ read as before.
    expect(defaultUserName({ kind: 'tenant-admin', tenant: 'acme' })).toBe('admin-acme');
    expect(() =>
      authzUsers([
        { kind: 'consumer', tenant: 'acme-billing' },
        { kind: 'consumer', tenant: 'acme', service: 'billing' },
      ]),
    ).not.toThrow();
  });

  it('derives the user name by a function that can be read back, so no two identities share one across runs', () => {
    const parts = [
      'a',
      'b',
      'a-b',
      'a_b',
      'a--b',
      'a__b',
      'a_-b',
      'a-_b',
      '-',
      '_',
      '-a',
      'a-',
      '_a',
      'a_',
      'svc',
      'admin',
      'scope',
      'x'.repeat(128),
      '_'.repeat(128),
    ];
    const roles: AuthzRole[] = [{ kind: 'refresher' }, { kind: 'audit' }, { kind: 'operator' }];
    for (const tenant of parts) {
      roles.push({ kind: 'tenant-admin', tenant }, { kind: 'consumer', tenant });
      for (const service of parts) roles.push({ kind: 'consumer', tenant, service });
      roles.push({ kind: 'scoped-consumer', service: tenant, scope: ['*.*'] });
    }
    const seen = new Map<string, string>();
    for (const role of roles) {
      const name = defaultUserName(role);
      const identity = JSON.stringify(identityOf(role));
      expect(seen.get(name) ?? identity, name).toBe(identity);
      seen.set(name, identity);
      expect(JSON.stringify(readUserName(name))).toBe(identity);
      expect(defaultUserName(role)).toBe(name);
      expect(() => authzUser(role)).not.toThrow();
    }
    expect(seen.size).toBe(roles.length);
  });
});

/** What a user name stands for: the role's kind, tenant and service (connections are its grant). */
function identityOf(role: AuthzRole): string[] {
  if (role.kind === 'tenant-admin') return ['admin', role.tenant];
  if (role.kind === 'consumer') return ['svc', role.tenant, ...(role.service === undefined ? [] : [role.service])];
  if (role.kind === 'scoped-consumer') return ['scope', role.service];
  return [role.kind];
}

/** The inverse of defaultUserName: split at unescaped `-`, then undo `__` and `_-`. */
function readUserName(name: string): string[] {
  const parts = [''];
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '_') parts[parts.length - 1] += name[++i]!;
    else if (c === '-') parts.push('');
    else parts[parts.length - 1] += c;
  }
  return parts;
}
