import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUDIT_RECORD_TYPES } from '../libs/contracts/src/subjects.js';
import { REPO_ROOT } from './compile.js';

/** The first cell of each row of docs/audit.md's "Record types" table. */
function documentedTypes(): string[] {
  const doc = readFileSync(join(REPO_ROOT, 'docs/audit.md'), 'utf8');
  const section = doc.split('### Record types')[1]?.split('\n\n')[1] ?? '';
  return section.split('\n').flatMap((line) => {
    const match = /^\| `([a-z_]+)` \|/.exec(line);
    return match ? [match[1]] : [];
  });
}

// Audit consumers write their queries against this table: a type the contract adds without a
// row here is one nobody outside the code knows about.
describe('docs/audit.md record types', () => {
  it('lists every audit record type of the contract, and no other', () => {
    expect([...documentedTypes()].sort()).toEqual([...AUDIT_RECORD_TYPES].sort());
  });
});
