import { describe, expect, it } from 'vitest';
import { ContractError } from './errors.js';
import {
  AuditQueryRequestSchema,
  CredentialPayloadSchema,
  parseAuditQueryRequest,
  parseCredentialRequest,
  parseListRequest,
  parseRequest,
  parseTokenGetRequest,
  TokenGetPayloadSchema,
  TokenListRequestSchema,
  TokenRegisterPayloadSchema,
} from './messages.js';
import { assertPayloadMatchesSubject, parseTokenGetSubject } from './wire-subjects.js';

function outcome(parse: () => unknown): unknown {
  try {
    return { ok: parse() };
  } catch (error) {
    expect(error).toBeInstanceOf(ContractError);
    return { code: (error as ContractError).code, message: (error as ContractError).message };
  }
}

/** What the contract says, step by step: subject names, payload schema, payload names equal to the subject's. */
function bySchema(data: unknown, subject: string) {
  const key = parseTokenGetSubject(subject);
  const payload = parseRequest(TokenGetPayloadSchema, data);
  assertPayloadMatchesSubject(payload, key);
  const request: Record<string, unknown> = { ...key };
  if (payload.minTtlSeconds !== undefined) request.minTtlSeconds = payload.minTtlSeconds;
  if (payload.rejectedVersion !== undefined) request.rejectedVersion = payload.rejectedVersion;
  return request;
}

/** The hand-written token.get check must accept, reject and word its errors exactly as the schema does. */
describe('parseTokenGetRequest', () => {
  const long = 'a'.repeat(128);
  const payloads: unknown[] = [
    {},
    { minTtlSeconds: 0, rejectedVersion: 0 },
    { minTtlSeconds: 86_400, rejectedVersion: 9_007_199_254_740_991 },
    { traceId: 'unknown fields are dropped' },
    { tenant: 'acme', connection: 'github' },
    { tenant: 'acme' },
    { connection: 'github', minTtlSeconds: 5 },
    { tenant: 'other', connection: 'github' },
    { tenant: 'acme', connection: 'gitlab' },
    { tenant: `${long}a`, connection: 'github' },
    { tenant: 'acme', connection: 'git.hub' },
    { tenant: 'ac me' },
    { tenant: '' },
    { tenant: 1 },
    { connection: null },
    { minTtlSeconds: 'soon' },
    { minTtlSeconds: 1.5 },
    { minTtlSeconds: -1 },
    { minTtlSeconds: 86_401 },
    { minTtlSeconds: null },
    { rejectedVersion: -1 },
    { rejectedVersion: 2 ** 53 + 2 },
    { rejectedVersion: '3' },
    { tenant: 'x*', connection: '>', minTtlSeconds: -5, rejectedVersion: 'no' },
    { tenant: 'other', minTtlSeconds: -5 },
    [],
    null,
    'acme',
  ];
  const subjects = [
    'token.get.acme.github',
    `token.get.${long}.${long}`,
    'token.get.ac%me.github',
    `token.get.acme.${long}a`,
    'token.get.acme',
    'token.get.a.b.c',
  ];
  const cases = subjects.flatMap((subject) =>
    payloads.map((payload) => [subject, JSON.stringify(payload), payload] as const),
  );

  it.each(cases)('%s %s', (subject, _name, input) => {
    expect(outcome(() => parseTokenGetRequest(input, subject))).toEqual(outcome(() => bySchema(input, subject)));
  });

  it('takes the credential from the subject', () => {
    expect(parseTokenGetRequest({}, 'token.get.acme.github')).toEqual({ tenant: 'acme', connection: 'github' });
    expect(parseTokenGetRequest({ rejectedVersion: 3, tenant: 'acme' }, 'token.get.acme.github')).toEqual({
      tenant: 'acme',
      connection: 'github',
      rejectedVersion: 3,
    });
    expect(outcome(() => parseTokenGetRequest({ tenant: 'other' }, 'token.get.acme.github'))).toMatchObject({
      code: 'bad_request',
      message: /tenant differs/,
    });
  });
});

describe('admin and query payloads', () => {
  const subject = 'tokenkeeper.admin.register.acme.github';
  const code = (run: () => unknown) => (outcome(run) as { code?: string }).code;

  it('addresses an admin request by its subject; payload names are optional and must match', () => {
    expect(parseCredentialRequest(TokenRegisterPayloadSchema, { provider: 'gh', accessToken: 'x' }, subject)).toEqual({
      provider: 'gh',
      accessToken: 'x',
      tenant: 'acme',
      connection: 'github',
    });
    expect(
      parseCredentialRequest(
        CredentialPayloadSchema,
        { tenant: 'acme', connection: 'github' },
        'tokenkeeper.admin.describe.acme.github',
      ),
    ).toEqual({
      tenant: 'acme',
      connection: 'github',
    });
    expect(
      code(() =>
        parseCredentialRequest(CredentialPayloadSchema, { tenant: 'other' }, 'tokenkeeper.admin.revoke.acme.github'),
      ),
    ).toBe('bad_request');
    expect(
      code(() =>
        parseCredentialRequest(
          CredentialPayloadSchema,
          { connection: 'gitlab' },
          'tokenkeeper.admin.revoke.acme.github',
        ),
      ),
    ).toBe('bad_request');
    expect(
      code(() => parseCredentialRequest(TokenRegisterPayloadSchema, { provider: 'gh', isAdmin: true }, subject)),
    ).toBe('bad_request');
    expect(
      code(() => parseCredentialRequest(CredentialPayloadSchema, {}, 'tokenkeeper.admin.describe.ac%me.github')),
    ).toBe('bad_request');
    expect(
      code(() =>
        parseCredentialRequest(CredentialPayloadSchema, {}, `tokenkeeper.admin.describe.acme.${'x'.repeat(129)}`),
      ),
    ).toBe('bad_request');
  });

  it('scopes list and audit queries by the subject, else by the payload filter', () => {
    expect(parseListRequest({ limit: 2 }, 'tokenkeeper.admin.list.acme')).toEqual({ limit: 2, tenant: 'acme' });
    expect(parseListRequest({ tenant: 'acme' }, 'tokenkeeper.admin.list.acme')).toEqual({ tenant: 'acme' });
    expect(parseListRequest({ tenant: 'beta' }, 'tokenkeeper.admin.list')).toEqual({ tenant: 'beta' });
    expect(parseListRequest({}, 'tokenkeeper.admin.list')).toEqual({});
    expect(code(() => parseListRequest({ tenant: 'beta' }, 'tokenkeeper.admin.list.acme'))).toBe('bad_request');
    expect(code(() => parseListRequest({ extra: 1 }, 'tokenkeeper.admin.list'))).toBe('bad_request');
    expect(code(() => parseListRequest({}, 'tokenkeeper.admin.list.a%b'))).toBe('bad_request');
    expect(parseAuditQueryRequest({ connection: 'github' }, 'audit.query.acme')).toEqual({
      connection: 'github',
      tenant: 'acme',
    });
    expect(parseAuditQueryRequest({ tenant: 'beta' }, 'audit.query')).toEqual({ tenant: 'beta' });
    expect(code(() => parseAuditQueryRequest({ tenant: 'beta' }, 'audit.query.acme'))).toBe('bad_request');
    expect(code(() => parseAuditQueryRequest({}, 'audit.query.a$b'))).toBe('bad_request');
    // The schemas themselves stay strict.
    expect(TokenListRequestSchema.safeParse({ nope: 1 }).success).toBe(false);
    expect(AuditQueryRequestSchema.safeParse({ nope: 1 }).success).toBe(false);
  });
});
