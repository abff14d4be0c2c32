// ESLint flat config: typescript-eslint with type information (projectService reads
// tsconfig.json), Prettier owning layout (eslint-config-prettier turns off the rules that would
// fight it), and the folder rules of docs/design.md as import boundaries.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';
import { importBoundaries } from './tools/import-boundaries.mjs';

export default tseslint.config(
  {
    ignores: ['**/node_modules/', '**/dist/', 'coverage/', '.tokenkeeper/', 'bench/results/'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: {
        projectService: { allowDefaultProject: ['vitest.config.ts', 'vitest.*.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits loses its rejection; `void` marks the few that are meant to run on.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // Nest lifecycle hooks and handler maps are async by contract; an `async` without `await`
      // there is the interface, not a slip (all 30 findings were of that kind).
      '@typescript-eslint/require-await': 'off',
      // A double cast silences the compiler entirely: the value can drift from the type it claims.
      'no-restricted-syntax': [
        'error',
        {
          selector: 'TSAsExpression > TSAsExpression.expression > TSUnknownKeyword.typeAnnotation',
          message:
            '`as unknown as T` turns type checking off; implement an interface (a port) or parse the value instead.',
        },
      ],
    },
  },
  {
    // Test code (specs, harnesses, fixtures, benchmarks) reads replies, rows and logs as JSON and
    // asserts on their shape: the no-unsafe-* rules report each property access of such a value
    // (about 1,050 findings, none a defect), and `expect(x.method)` trips unbound-method. The
    // promise rules stay on here too. Double casts are warnings while the fakes become typed ports.
    files: ['**/*.spec.ts', '**/*.e2e-spec.ts', '**/test/**', '**/*.fixture.ts', 'libs/testing/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/unbound-method': 'off',
      // Assertion messages print whatever a test received, `${secret}` included on purpose.
      '@typescript-eslint/restrict-template-expressions': 'off',
      '@typescript-eslint/no-base-to-string': 'off',
      // `x!` on a value a test has just set, or `as T` on a parsed reply, documents the
      // expectation; 140 findings of no value to the reader.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      'no-restricted-syntax': 'warn',
    },
  },
  {
    // Plain JavaScript (bin/, deploy/, tools/): no type information to lint with.
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  ...importBoundaries(),
  prettier,
);
