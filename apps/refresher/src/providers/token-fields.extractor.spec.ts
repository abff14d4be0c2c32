import { describe, expect, it } from 'vitest';
import { extractTokenFields, tokenFieldProblem } from './token-fields.extractor.js';

const jwt = (claims: object) =>
  `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;

describe('tokenFields', () => {
  it('keeps top-level fields, flattens nested ones and reads named id_token claims', () => {
    const json = {
      access_token: 'secret-at',
      instance_url: 'https://acme.my.salesforce.com',
      team: { id: 'T123', name: 'Acme' },
      id_token: jwt({ tid: 'tenant-guid', email: 'x@example.com' }),
      expires_in: 3600,
    };
    expect(extractTokenFields(json, ['instance_url', 'team.id', 'team.name', 'id_token.tid', 'missing'])).toEqual({
      instance_url: 'https://acme.my.salesforce.com',
      'team.id': 'T123',
      'team.name': 'Acme',
      'id_token.tid': 'tenant-guid',
    });
  });

  it('answers undefined when no field is there (the stored ones stay) and skips objects', () => {
    expect(extractTokenFields({ access_token: 'x' }, ['instance_url'])).toBeUndefined();
    expect(extractTokenFields({ team: { id: 'T' } }, ['team'])).toBeUndefined();
    expect(extractTokenFields({ id_token: 'not-a-jwt' }, ['id_token.tid'])).toBeUndefined();
  });

  it('refuses secrets as fields', () => {
    for (const name of ['access_token', 'refresh_token', 'id_token', 'refresh_token.x', 'a b', 'a.b.c.d.e'])
      expect(tokenFieldProblem(name)).toBeDefined();
    expect(tokenFieldProblem('id_token.tid')).toBeUndefined();
  });
});
