// The folder rules of docs/design.md ("Folders, and what each may import") as ESLint
// `no-restricted-imports` blocks, so a forbidden import fails `npm run lint` with the rule's
// reason. An allowlist per folder keeps the folders acyclic by construction, which is what
// the old cycle script checked after the fact; the unit test beside the config
// (tools/import-boundaries.spec.ts) fails when a folder of apps/refresher/src has no row.

const REFRESHER = 'apps/refresher/src';

/** folder -> the folders it may import, and why that is the line. */
export const refresherFolders = {
  domain: { may: [], why: 'the domain is the vocabulary every folder shares, so it depends on none of them' },
  config: { may: [], why: 'validated configuration is read by every folder and reads none' },
  metrics: { may: [], why: 'the Prometheus registry is observed by all and observes nothing' },
  crypto: { may: ['config'], why: 'the cipher and its keys need only their configuration' },
  nats: { may: ['config'], why: 'the connection token needs only its settings' },
  providers: { may: ['domain'], why: 'HTTP to token endpoints knows the domain, not storage or the bus' },
  persistence: {
    may: ['domain', 'crypto', 'config'],
    why: 'all SQL lives here; it knows the shapes it stores and the cipher, never the callers above it',
  },
  events: {
    may: ['domain', 'nats', 'metrics'],
    why: 'signed replies and events sit below refresh and tokens, which call them',
  },
  refresh: {
    may: ['domain', 'events', 'metrics', 'persistence', 'providers', 'config'],
    why: 'the refresh core drives storage, providers and events; handlers and operations sit above it',
  },
  tokens: {
    may: ['domain', 'config', 'crypto', 'metrics', 'persistence', 'providers', 'nats', 'events', 'refresh'],
    why: 'request handlers sit on the core; nothing in the core calls them',
  },
  connect: {
    may: ['domain', 'config', 'crypto', 'persistence', 'providers', 'tokens'],
    why: 'the connect flow is a handler beside tokens and registers through TokenService',
  },
  audit: { may: ['config', 'nats', 'persistence'], why: 'the outbox relay publishes what persistence wrote' },
  webhooks: {
    may: ['config', 'metrics', 'persistence'],
    why: 'webhook delivery sends what persistence derived from the outbox; nothing below it calls it',
  },
  observability: {
    may: ['metrics', 'nats', 'persistence', 'refresh'],
    why: 'health and metrics observe the others; nothing they observe may depend on them',
  },
  lifecycle: {
    may: ['config', 'observability', 'refresh'],
    why: 'the shutdown order stops the others and is called by none of them',
  },
};

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function folderPatterns(folder) {
  const { may, why } = refresherFolders[folder];
  const forbidden = Object.keys(refresherFolders).filter((other) => other !== folder && !may.includes(other));
  const allowed = may.length ? may.map((f) => `${f}/`).join(', ') : 'no other folder';
  return [
    {
      // `(../)+` covers files in subfolders (persistence/migrations) too.
      regex: `^(\\.\\./)+(${forbidden.map(escape).join('|')})(/|$)`,
      message: `${folder}/ may import ${allowed} (docs/design.md, "Folders"): ${why}.`,
    },
    {
      regex: '^(\\.\\./)+(refresher\\.module|refresher\\.app|main)(\\.js)?$',
      message: `${folder}/ must not import the app's wiring (refresher.module, refresher.app, main): the wiring imports every folder, so this would close a cycle.`,
    },
  ];
}

// Test-only code: the harnesses start databases, nats-servers, browsers and TCP proxies, and
// vitest is a devDependency; neither belongs in what the image runs.
const testOnly = [
  {
    group: ['vitest', 'vitest/*'],
    message:
      'production code must not import vitest (a devDependency the image does not ship); test helpers belong under test/ or in libs/testing.',
  },
  {
    group: ['@tokenkeeper/testing', '**/libs/testing/**'],
    message:
      'production code must not import the test harnesses (databases, nats-servers, browsers, TCP proxies): the image would ship them.',
  },
];

const libsBelowApps = {
  group: ['**/apps/**'],
  message: 'libs/ must not import from apps/: the apps depend on the libs, never the reverse.',
};

// Files that break the test-only rule today and are on their way out of src: the demo and the
// sandbox provider start the sandbox from the testing barrel, and a fixture imports vitest.
export const testOnlyExceptions = [
  'apps/demo/src/main.ts',
  'apps/demo/src/demo-bus.ts',
  'apps/sandbox-provider/src/main.ts',
  '**/*.fixture.ts',
];

const testFiles = ['**/*.spec.ts', '**/*.e2e-spec.ts', '**/test/**'];

// ESLint does not merge the options of one rule across config blocks (the last block that
// matches a file wins), so each block carries every pattern that applies to its files.
const restrict = (patterns) => ({ 'no-restricted-imports': ['error', { patterns }] });

export function importBoundaries() {
  return [
    {
      name: 'boundaries/production-code',
      files: ['apps/*/src/**/*.ts'],
      ignores: [...testFiles, ...testOnlyExceptions],
      rules: restrict(testOnly),
    },
    {
      name: 'boundaries/libs',
      files: ['libs/*/src/**/*.ts'],
      ignores: [...testFiles, ...testOnlyExceptions, 'libs/testing/**'],
      rules: restrict([...testOnly, libsBelowApps]),
    },
    ...Object.keys(refresherFolders).map((folder) => ({
      name: `boundaries/refresher/${folder}`,
      files: [`${REFRESHER}/${folder}/**/*.ts`],
      ignores: [...testFiles, ...testOnlyExceptions],
      rules: restrict([...folderPatterns(folder), ...testOnly]),
    })),
  ];
}
