import { describe, expect, it } from 'vitest';
import { columnProblem, VERSION_MAX } from './audit-record.columns.js';

const record = {
  eventId: '3b241101-e2bb-4255-8caf-4136c566a962',
  type: 'failed' as const,
  tenant: 'acme',
  connection: 'github',
  provider: 'github',
  version: 3,
  at: '2026-01-05T10:00:00.000Z',
  replica: 'refresher-1',
  message: 'HTTP 503',
};

describe('columnProblem', () => {
  it('accepts what the columns hold, up to their edges', () => {
    for (const ok of [
      record,
      { ...record, version: 0 },
      { ...record, version: VERSION_MAX },
      { ...record, at: '0001-01-01T00:00:00.000Z' },
      { ...record, at: '9999-12-31T23:59:59.999Z' },
    ]) {
      expect(columnProblem(ok)).toBeUndefined();
    }
  });

  it('names the field, never the value', () => {
    expect(columnProblem({ ...record, version: 2 ** 31 })).toMatch(/^version: /);
    expect(columnProblem({ ...record, version: 2 ** 40 })).toMatch(/^version: /);
    expect(columnProblem({ ...record, at: '0000-01-01T00:00:00.000Z' })).toMatch(/^at: /);
    expect(columnProblem({ ...record, at: 'not a date' })).toMatch(/^at: /);
    const nul = columnProblem({ ...record, message: 'rt_secret\u0000x' });
    expect(nul).toMatch(/^message: /);
    expect(nul).not.toContain('rt_secret');
    expect(columnProblem({ ...record, version: 2 ** 40, at: '0000-01-01T00:00:00.000Z' })).toMatch(
      /^version: .*; at: /,
    );
  });
});
