import { describe, expect, it } from 'vitest';
import { redactMessage, sanitizeAuditRecord } from './audit-record.sanitizer.js';

const encode = (value: unknown) => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
const record = {
  recordId: '9f0c7d52-5d3a-4f7e-9a51-0b6f3c2e8d11',
  eventId: '3b241101-e2bb-4255-8caf-4136c566a962',
  type: 'failed',
  tenant: 'acme',
  connection: 'github',
  provider: 'github',
  version: 3,
  outcome: 'retryable',
  code: 'temporarily_unavailable',
  message: 'HTTP 503 temporarily_unavailable',
  at: '2026-01-05T10:00:00.000Z',
  replica: 'refresher-1',
};

describe('sanitizeAuditRecord', () => {
  it('keeps a well-formed record as it is', () => {
    expect(sanitizeAuditRecord('audit.token.failed.acme.github', encode(record))).toEqual({
      ok: true,
      record,
      dropped: [],
    });
  });

  it('takes the event id as record id for a record of an older refresher, which had none', () => {
    const { recordId: _none, ...legacy } = record;
    expect(sanitizeAuditRecord('audit.token.failed.acme.github', encode(legacy))).toEqual({
      ok: true,
      record: { ...legacy, recordId: legacy.eventId },
      dropped: [],
    });
  });

  it('drops every field outside the allow-list and names them', () => {
    const result = sanitizeAuditRecord(
      'audit.token.failed.acme.github',
      encode({ ...record, accessToken: 'at_x', refreshToken: 'rt_x', headers: { authorization: 'Bearer x' } }),
    );
    expect(result).toEqual({ ok: true, record, dropped: ['accessToken', 'refreshToken', 'headers'] });
    expect(JSON.stringify(result.ok && result.record)).not.toContain('_x');
  });

  it('refuses wrong types, bad names and a subject that disagrees, without quoting values', () => {
    const refused = [
      sanitizeAuditRecord('audit.token.failed.acme.github', encode({ ...record, version: 'three' })),
      sanitizeAuditRecord('audit.token.failed.acme.github', encode({ ...record, eventId: 'rt_secret_value' })),
      sanitizeAuditRecord('audit.token.failed.acme.github', encode({ ...record, recordId: 'rt_secret_value' })),
      sanitizeAuditRecord('audit.token.failed.acme.github', encode({ ...record, code: 'has spaces rt_secret_value' })),
      sanitizeAuditRecord('audit.token.failed.acme.gitlab', encode(record)),
      sanitizeAuditRecord('audit.token.refreshed.acme.github', encode(record)),
      sanitizeAuditRecord('audit.token.failed.acme.github', encode('not json')),
      sanitizeAuditRecord('audit.token.failed.acme.github', encode([record])),
    ];
    for (const result of refused) {
      expect(result.ok).toBe(false);
      expect(JSON.stringify(result)).not.toContain('rt_secret_value');
    }
  });

  it('normalises the timestamp to UTC', () => {
    const result = sanitizeAuditRecord(
      'audit.token.failed.acme.github',
      encode({ ...record, at: '2026-01-05T11:00:00+01:00' }),
    );
    expect(result.ok && result.record.at).toBe('2026-01-05T10:00:00.000Z');
  });
});

describe('redactMessage', () => {
  it.each([
    ['Authorization: Bearer abc.def-123', 'Authorization: Bearer [redacted]'],
    ['basic c2FuZGJveDpzZWNyZXQ=', 'basic [redacted]'],
    ['refresh_token=rt_12345&x=1', 'refresh_token=[redacted]&x=1'],
    ['{"client_secret": "hunter2"}', '{"client_secret": "[redacted]"}'],
    ['token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc', 'token [redacted]'],
    ['opaque at_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA left', 'opaque [redacted] left'],
    ['HTTP 400 invalid_grant: the refresh token expired', 'HTTP 400 invalid_grant: the refresh token expired'],
  ])('%s', (input, output) => {
    expect(redactMessage(input)).toBe(output);
  });

  it('cuts long messages and removes control characters', () => {
    expect(redactMessage('a\nb')).toBe('a b');
    expect(redactMessage('word '.repeat(100))).toHaveLength(300);
  });
});
