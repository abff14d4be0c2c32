import { describe, expect, it } from 'vitest';
import { ContractError } from './errors.js';
import {
  adminListSubject,
  adminSubject,
  assertPayloadMatchesSubject,
  auditQuerySubject,
  parseAdminListSubject,
  parseAdminSubject,
  parseAuditQuerySubject,
  parseTokenGetSubject,
  tokenGetSubject,
  WireSubscription,
} from './wire-subjects.js';

function code(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    return error instanceof ContractError ? error.code : `not a ContractError: ${String(error)}`;
  }
}

describe('wire subjects', () => {
  it('builds the data-plane, control-plane and audit subjects', () => {
    expect(tokenGetSubject('acme', 'github')).toBe('token.get.acme.github');
    expect(adminSubject('register', 'acme', 'github')).toBe('tokenkeeper.admin.register.acme.github');
    expect(adminSubject('connect', 'a_b-1', 'C')).toBe('tokenkeeper.admin.connect.a_b-1.C');
    expect(adminListSubject()).toBe('tokenkeeper.admin.list');
    expect(adminListSubject('acme')).toBe('tokenkeeper.admin.list.acme');
    expect(auditQuerySubject()).toBe('audit.query');
    expect(auditQuerySubject('acme')).toBe('audit.query.acme');
  });

  it('names the subscription patterns servers listen on', () => {
    expect(WireSubscription.tokenGet).toBe('token.get.*.*');
    expect(WireSubscription.admin('revoke')).toBe('tokenkeeper.admin.revoke.*.*');
    expect(WireSubscription.adminList).toBe('tokenkeeper.admin.list');
    expect(WireSubscription.adminListOfTenant).toBe('tokenkeeper.admin.list.*');
    expect(WireSubscription.auditQuery).toBe('audit.query');
    expect(WireSubscription.auditQueryOfTenant).toBe('audit.query.*');
  });

  it('refuses to build a subject from a name that is not a safe subject token', () => {
    for (const bad of ['', 'a.b', '*', '>', 'a b', 'ü', 'x'.repeat(129)]) {
      expect(code(() => tokenGetSubject(bad, 'c'))).toBe('bad_request');
      expect(code(() => tokenGetSubject('t', bad))).toBe('bad_request');
      expect(code(() => adminSubject('describe', bad, 'c'))).toBe('bad_request');
      expect(code(() => adminListSubject(bad))).toBe('bad_request');
      expect(code(() => auditQuerySubject(bad))).toBe('bad_request');
    }
    expect(code(() => adminSubject('drop' as never, 't', 'c'))).toBe('bad_request');
  });

  it('parses what a server received back into tenant and connection', () => {
    expect(parseTokenGetSubject('token.get.acme.github')).toEqual({ tenant: 'acme', connection: 'github' });
    expect(parseAdminSubject('tokenkeeper.admin.describe.acme.github')).toEqual({
      operation: 'describe',
      tenant: 'acme',
      connection: 'github',
    });
    expect(parseAdminListSubject('tokenkeeper.admin.list')).toEqual({});
    expect(parseAdminListSubject('tokenkeeper.admin.list.acme')).toEqual({ tenant: 'acme' });
    expect(parseAuditQuerySubject('audit.query')).toEqual({});
    expect(parseAuditQuerySubject('audit.query.acme')).toEqual({ tenant: 'acme' });
  });

  it('answers bad_request for subject tokens outside the name rule or of the wrong shape', () => {
    // `$`, `%` and `:` are legal in a NATS subject token, so a wildcard subscription delivers them.
    for (const subject of [
      'token.get.a$b.c',
      'token.get.a.c%d',
      'token.get.a',
      'token.get.a.b.c',
      'token.get..b',
      'token.got.a.b',
      `token.get.${'x'.repeat(129)}.c`,
    ]) {
      expect(
        code(() => parseTokenGetSubject(subject)),
        subject,
      ).toBe('bad_request');
    }
    for (const subject of [
      'tokenkeeper.admin.describe.a:b.c',
      'tokenkeeper.admin.drop.a.b',
      'tokenkeeper.admin.describe.a',
      'token.get.a.b',
    ]) {
      expect(
        code(() => parseAdminSubject(subject)),
        subject,
      ).toBe('bad_request');
    }
    for (const subject of [
      'tokenkeeper.admin.list.a$',
      'tokenkeeper.admin.list.a.b',
      'tokenkeeper.admin.lists',
      'audit.query.x',
    ]) {
      expect(
        code(() => parseAdminListSubject(subject)),
        subject,
      ).toBe('bad_request');
    }
    for (const subject of ['audit.query.a.b', 'audit.query.%', 'audit.queryx']) {
      expect(
        code(() => parseAuditQuerySubject(subject)),
        subject,
      ).toBe('bad_request');
    }
  });

  it('requires a payload that names tenant or connection to name the subject’s', () => {
    const scope = { tenant: 'acme', connection: 'github' };
    expect(code(() => assertPayloadMatchesSubject({}, scope))).toBeUndefined();
    expect(
      code(() => assertPayloadMatchesSubject({ tenant: 'acme', connection: 'github', minTtlSeconds: 5 }, scope)),
    ).toBeUndefined();
    expect(code(() => assertPayloadMatchesSubject({ tenant: 'globex' }, scope))).toBe('bad_request');
    expect(code(() => assertPayloadMatchesSubject({ connection: 'gitlab' }, scope))).toBe('bad_request');
    expect(code(() => assertPayloadMatchesSubject({ tenant: ['acme'] }, scope))).toBe('bad_request');
    expect(code(() => assertPayloadMatchesSubject({ tenant: null }, scope))).toBe('bad_request');
    // Cross-tenant list: the payload's tenant is a filter, not a contradiction.
    expect(code(() => assertPayloadMatchesSubject({ tenant: 'globex' }, {}))).toBeUndefined();
    // One-tenant list: connection is not fixed by the subject.
    expect(
      code(() => assertPayloadMatchesSubject({ tenant: 'acme', connection: 'x' }, { tenant: 'acme' })),
    ).toBeUndefined();
    expect(code(() => assertPayloadMatchesSubject({ tenant: 'globex' }, { tenant: 'acme' }))).toBe('bad_request');
    // Shapes that are not objects are the schema's business, not this check's.
    expect(code(() => assertPayloadMatchesSubject('x', scope))).toBeUndefined();
  });
});
