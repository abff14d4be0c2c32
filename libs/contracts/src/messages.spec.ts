import { describe, expect, it } from 'vitest';
import { ContractError } from './errors.js';
import { parseRequest, parseTokenGetRequest, TokenGetRequestSchema } from './messages.js';

function outcome(parse: () => unknown): unknown {
  try {
    return { ok: parse() };
  } catch (error) {
    expect(error).toBeInstanceOf(ContractError);
    return { code: (error as ContractError).code, message: (error as ContractError).message };
  }
}

/** The hand-written token.get check must accept, reject and word its errors exactly as the schema does. */
describe('parseTokenGetRequest', () => {
  const long = 'a'.repeat(128);
  const cases: unknown[] = [
    { tenant: 'acme', connection: 'github' },
    { tenant: 'acme', connection: 'github', minTtlSeconds: 0, rejectedVersion: 0 },
    { tenant: 'acme', connection: 'github', minTtlSeconds: 86_400, rejectedVersion: 9_007_199_254_740_991 },
    { tenant: long, connection: `${long}`, traceId: 'unknown fields are dropped' },
    { tenant: `${long}a`, connection: 'github' },
    { tenant: 'acme', connection: 'git.hub' },
    { tenant: 'ac me', connection: 'github' },
    { tenant: '', connection: 'github' },
    { tenant: 1, connection: 'github' },
    { connection: 'github' },
    { tenant: 'acme', connection: 'github', minTtlSeconds: 'soon' },
    { tenant: 'acme', connection: 'github', minTtlSeconds: 1.5 },
    { tenant: 'acme', connection: 'github', minTtlSeconds: -1 },
    { tenant: 'acme', connection: 'github', minTtlSeconds: 86_401 },
    { tenant: 'acme', connection: 'github', minTtlSeconds: null },
    { tenant: 'acme', connection: 'github', rejectedVersion: -1 },
    { tenant: 'acme', connection: 'github', rejectedVersion: 2 ** 53 + 2 },
    { tenant: 'acme', connection: 'github', rejectedVersion: '3' },
    { tenant: 'x*', connection: '>', minTtlSeconds: -5, rejectedVersion: 'no' },
    [],
    null,
    'acme',
  ];

  it.each(cases.map((c) => [JSON.stringify(c), c]))('%s', (_name, input) => {
    expect(outcome(() => parseTokenGetRequest(input))).toEqual(outcome(() => parseRequest(TokenGetRequestSchema, input)));
  });
});
