import { readFileSync } from 'node:fs';
import {
  ADMIN_CREDENTIAL_OPERATIONS,
  parseAdminListSubject,
  parseAdminSubject,
  parseAuditQuerySubject,
  parseAuditSubject,
  parseTokenEventSubject,
  parseTokenGetSubject,
  parseWebhookSubject,
  TOKEN_EVENT_KINDS,
} from '@tokenkeeper/contracts';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ASYNCAPI_PATH, CHANNELS, renderAsyncApi } from './asyncapi.js';

const fill = (address: string) =>
  address.replace('{tenant}', 'acme').replace('{connection}', 'github').replace('{type}', 'refreshed');

/** Which of the contract's own subject parsers takes an address (with its parameters filled). */
function parsedBy(subject: string): string | null {
  const attempts: Array<[string, () => unknown]> = [
    ['token.get', () => parseTokenGetSubject(subject)],
    [
      'token event',
      () =>
        parseTokenEventSubject(subject) ??
        (() => {
          throw new Error();
        })(),
    ],
    ['admin', () => parseAdminSubject(subject)],
    ['admin list', () => parseAdminListSubject(subject)],
    ['admin webhook', () => parseWebhookSubject(subject)],
    [
      'audit record',
      () =>
        parseAuditSubject(subject) ??
        (() => {
          throw new Error();
        })(),
    ],
    ['audit query', () => parseAuditQuerySubject(subject)],
  ];
  for (const [what, attempt] of attempts) {
    try {
      attempt();
      return what;
    } catch {
      // not this kind of subject
    }
  }
  return null;
}

describe('docs/asyncapi.yaml', () => {
  it('is what the contracts generate (run `npm run asyncapi` after changing a schema)', () => {
    expect(readFileSync(ASYNCAPI_PATH, 'utf8')).toBe(renderAsyncApi());
  });

  it('has a channel for every subject of the contract, each one a subject the services parse', () => {
    const addresses = Object.values(CHANNELS).map((c) => c.address);
    for (const kind of TOKEN_EVENT_KINDS) expect(addresses).toContain(`token.${kind}.{tenant}.{connection}`);
    for (const op of ADMIN_CREDENTIAL_OPERATIONS)
      expect(addresses).toContain(`tokenkeeper.admin.${op}.{tenant}.{connection}`);
    for (const address of addresses) expect(parsedBy(fill(address)), address).not.toBeNull();
  });

  it('is an AsyncAPI 3 document whose references all resolve', () => {
    const doc = parse(readFileSync(ASYNCAPI_PATH, 'utf8'));
    expect(doc.asyncapi).toBe('3.0.0');
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(50);
    for (const path of refs) {
      const target = path
        .split('/')
        .reduce<any>((node, key) => node?.[key.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
      expect(target, path).toBeDefined();
    }
    for (const [id, operation] of Object.entries<any>(doc.operations)) {
      expect(['send', 'receive'], id).toContain(operation.action);
      expect(operation.messages.length, id).toBeGreaterThan(0);
    }
  });
});
