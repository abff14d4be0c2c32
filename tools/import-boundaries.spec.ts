import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { refresherFolders } from './import-boundaries.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

// The project's own eslint.config.mjs, reduced to the boundary rule: the files linted here
// exist only as text, so there is no type information for the other rules to use.
const eslint = new ESLint({
  cwd: root,
  overrideConfig: { languageOptions: { parserOptions: { projectService: false } } },
  ruleFilter: ({ ruleId }) => ruleId === 'no-restricted-imports',
});

async function boundaryErrors(filePath: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath });
  return result!.messages.map((m) => `${m.ruleId}: ${m.message}`);
}

describe('import boundaries (docs/design.md, "Folders")', () => {
  it('fails an import a folder may not make, with the rule and its reason', async () => {
    const errors = await boundaryErrors(
      'apps/refresher/src/domain/wrong.ts',
      "import { CredentialRepository } from '../persistence/credential.repository.js';\nexport const x = CredentialRepository;\n",
    );
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('no-restricted-imports');
    expect(errors[0]).toContain('domain/ may import no other folder');
    expect(errors[0]).toContain('depends on none of them');
  });

  it('passes the imports the table allows', async () => {
    const errors = await boundaryErrors(
      'apps/refresher/src/persistence/fine.ts',
      "import { Credential } from '../domain/credential.js';\nimport { TokenCipher } from '../crypto/token-cipher.js';\nexport const x = [Credential, TokenCipher];\n",
    );
    expect(errors).toEqual([]);
  });

  it('holds in subfolders and for the wiring at the root', async () => {
    expect(
      await boundaryErrors(
        'apps/refresher/src/persistence/migrations/wrong.ts',
        "import { RefreshService } from '../../refresh/refresh.service.js';\nexport const x = RefreshService;\n",
      ),
    ).toEqual([expect.stringContaining('persistence/ may import domain/, crypto/, config/')]);
    expect(
      await boundaryErrors(
        'apps/refresher/src/tokens/wrong.ts',
        "import { RefresherModule } from '../refresher.module.js';\nexport const x = RefresherModule;\n",
      ),
    ).toEqual([expect.stringContaining("must not import the app's wiring")]);
  });

  it('keeps the test harnesses and vitest out of production code, and apps out of libs', async () => {
    expect(
      await boundaryErrors(
        'apps/audit/src/wrong.ts',
        "import { startNatsServer } from '@tokenkeeper/testing';\nexport const x = startNatsServer;\n",
      ),
    ).toEqual([expect.stringContaining('must not import the test harnesses')]);
    expect(
      await boundaryErrors(
        'apps/refresher/src/refresh/wrong.ts',
        "import { vi } from 'vitest';\nexport const x = vi;\n",
      ),
    ).toEqual([expect.stringContaining('must not import vitest')]);
    expect(
      await boundaryErrors(
        'libs/common/src/wrong.ts',
        "import { RefreshService } from '../../../apps/refresher/src/refresh/refresh.service.js';\nexport const x = RefreshService;\n",
      ),
    ).toEqual([expect.stringContaining('libs/ must not import from apps/')]);
    // Tests may use both.
    expect(
      await boundaryErrors(
        'apps/audit/src/fine.spec.ts',
        "import { startNatsServer } from '@tokenkeeper/testing';\nexport const x = startNatsServer;\n",
      ),
    ).toEqual([]);
  });

  it('has a row for every folder of apps/refresher/src', () => {
    const folders = readdirSync(`${root}/apps/refresher/src`, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
    expect(folders.filter((f) => !(f in refresherFolders))).toEqual([]);
  });
});
