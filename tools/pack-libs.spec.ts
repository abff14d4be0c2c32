import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './compile.js';
import { PACKED_LIBS, packageOf, undeclaredImports, versionProblems } from './pack-libs.js';

describe('the published libraries', () => {
  it.each(PACKED_LIBS)('%s declares every package its shipped sources import', (lib) => {
    expect(undeclaredImports(join(REPO_ROOT, 'libs', lib))).toEqual([]);
  });

  it('carry the project version, and depend on each other at it', () => {
    const manifest = (dir: string) => JSON.parse(readFileSync(join(REPO_ROOT, dir, 'package.json'), 'utf8'));
    expect(
      versionProblems(
        manifest('.'),
        PACKED_LIBS.map((lib) => manifest(`libs/${lib}`)),
      ),
    ).toEqual([]);
    expect(
      versionProblems({ name: 'root', version: '9.9.9' }, [
        { name: '@tokenkeeper/client', version: '9.9.9', dependencies: { '@tokenkeeper/contracts': '0.1.0' } },
      ]),
    ).toEqual(['@tokenkeeper/client depends on @tokenkeeper/contracts@0.1.0, not 9.9.9']);
  });

  it('the check sees an import the manifest lacks, and ignores tests, builtins and relative imports', () => {
    expect(packageOf('@nats-io/nkeys/lib/codec.js')).toBe('@nats-io/nkeys');
    const lib = mkdtempSync(join(tmpdir(), 'tk-lib-'));
    mkdirSync(join(lib, 'src'));
    writeFileSync(
      join(lib, 'package.json'),
      JSON.stringify({ name: 'x', version: '1.0.0', dependencies: { zod: '^4' } }),
    );
    writeFileSync(
      join(lib, 'src/a.ts'),
      "import { z } from 'zod';\nimport { Module } from '@nestjs/common';\nexport { x } from './b.js';\nimport { readFileSync } from 'node:fs';\nimport path from 'path';\n",
    );
    writeFileSync(join(lib, 'src/a.spec.ts'), "import { it } from 'vitest';\n");
    try {
      expect(undeclaredImports(lib)).toEqual(['a.ts: @nestjs/common']);
    } finally {
      rmSync(lib, { recursive: true, force: true });
    }
  });
});
