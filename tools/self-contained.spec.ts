import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './compile.js';

/**
 * The repository stands on its own: no comment, test or doc points at a document outside it
 * (a spec file, an issue tracker's numbers). Readers have neither; the contract is written
 * down here, in README.md and docs/. CHANGELOG.md is history and exempt.
 */
const OUTSIDE_REFERENCES = /SPEC ?§|SPEC\.md|\.\.\/shared\/|\b[Ii]ssue #?\d+\b/;

/** Folders that hold no source of ours: installed, built, generated or local state. */
const SKIPPED = new Set(['node_modules', 'dist', '.git', '.tokenkeeper', 'results', 'coverage']);

function sourceFiles(dir = ''): string[] {
  return readdirSync(join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) return SKIPPED.has(entry.name) ? [] : sourceFiles(path);
    return entry.isFile() ? [path] : [];
  });
}

describe('the repository stands on its own', () => {
  it('no tracked file cites a document outside the repository', () => {
    const offenders: string[] = [];
    for (const file of sourceFiles()) {
      if (
        file === 'CHANGELOG.md' ||
        file === 'tools/self-contained.spec.ts' ||
        /\.(png|svg|tgz|log)$/.test(file) ||
        file.startsWith('.env')
      )
        continue;
      const lines = readFileSync(join(REPO_ROOT, file), 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (OUTSIDE_REFERENCES.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim().slice(0, 120)}`);
      });
    }
    expect(offenders).toEqual([]);
  });
});
