import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AUDIT_ENV_VARIABLES } from '../../../audit/src/config/audit-config.js';
import { ENV_VARIABLES } from '../config/app-config.js';
import { interpolateString, isReservedVariable } from './env-interpolation.util.js';
import { loadProvidersFile, parseProvidersDocument, ProvidersFileError } from './providers-file.loader.js';

const env = { GH_ID: 'Iv1.abc', GH_SECRET: 'gh-s3cret-value', IDP_SECRET: 'idp-s3cret', EMPTY: '' };
const yaml = (text: string, e: Record<string, string | undefined> = env) =>
  parseProvidersDocument(text, 'yaml', e, 'providers file /x.yaml');

function errorOf(fn: () => unknown): ProvidersFileError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ProvidersFileError);
    return error as ProvidersFileError;
  }
  throw new Error('expected a ProvidersFileError');
}

describe('parseProvidersDocument', () => {
  it('reads the spec example: presets applied, interpolation, defaults', () => {
    const providers = yaml(`
providers:
  github:
    preset: github
    clientId: \${GH_ID}
    clientSecret: \${GH_SECRET}
  internal-idp:
    tokenUrl: https://idp.example.com/oauth/token
    clientId: billing-service
    clientSecret: \${IDP_SECRET}
    authMethod: client_secret_basic
    grant: client_credentials
`);
    const github = providers.get('github')!;
    expect(github).toMatchObject({
      id: 'github',
      preset: 'github',
      tokenUrl: 'https://github.com/login/oauth/access_token',
      clientId: 'Iv1.abc',
      authMethod: 'client_secret_post',
      grant: 'refresh_token',
      threshold: 0.8,
      maxConcurrency: 8,
      onDemandCooldownSeconds: 30,
      extraParams: {},
      rotation: 'rotates',
    });
    expect(github.clientSecret?.reveal()).toBe('gh-s3cret-value');
    expect(github.errorCodes?.['bad_refresh_token']).toBe('invalid_grant');
    expect(github.revocationUrl).toBeUndefined();
    const idp = providers.get('internal-idp')!;
    expect(idp).toMatchObject({ preset: 'generic', grant: 'client_credentials', authMethod: 'client_secret_basic' });
    expect(JSON.stringify([...providers.values()])).not.toContain('s3cret');
  });

  it('fills tenant/domain URLs from extraParams without sending them, derives revocation', () => {
    const providers = yaml(`
providers:
  ms:
    preset: microsoft
    clientId: app
    clientSecret: s
    scopes: [offline_access, "https://graph.microsoft.com/Mail.Read"]
    extraParams: { tenant: contoso.onmicrosoft.com }
  a0:
    preset: auth0
    clientId: app
    clientSecret: s
    grant: client_credentials
    extraParams: { domain: acme.eu.auth0.com, audience: https://api.acme.com }
  okta:
    preset: okta
    tokenUrl: https://acme.okta.com/oauth2/aus123/v1/token
    clientId: app
    clientSecret: s
  google:
    preset: google
    clientId: app
    clientSecret: s
    threshold: 0.5
    defaultTtlSeconds: 3600
    maxConcurrency: 2
`);
    expect(providers.get('ms')).toMatchObject({
      tokenUrl: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token',
      extraParams: {},
      authMethod: 'client_secret_post',
      scopes: ['offline_access', 'https://graph.microsoft.com/Mail.Read'],
    });
    expect(providers.get('a0')).toMatchObject({
      tokenUrl: 'https://acme.eu.auth0.com/oauth/token',
      revocationUrl: 'https://acme.eu.auth0.com/oauth/revoke',
      extraParams: { audience: 'https://api.acme.com' },
      rotation: 'rotates_with_reuse_detection',
    });
    expect(providers.get('okta')).toMatchObject({
      revocationUrl: 'https://acme.okta.com/oauth2/aus123/v1/revoke',
      authMethod: 'client_secret_basic',
    });
    expect(providers.get('google')).toMatchObject({
      revocationUrl: 'https://oauth2.googleapis.com/revoke',
      threshold: 0.5,
      defaultTtlSeconds: 3600,
      maxConcurrency: 2,
      rotation: 'none',
    });
  });

  it('reads JSON, including numbers', () => {
    const providers = parseProvidersDocument(
      JSON.stringify({
        providers: {
          slack: {
            preset: 'slack',
            clientId: '123456789012.123456789012',
            clientSecret: '${GH_SECRET}',
            threshold: 0.9,
          },
        },
      }),
      'json',
      env,
    );
    expect(providers.get('slack')).toMatchObject({
      clientId: '123456789012.123456789012',
      threshold: 0.9,
      tokenType: 'Bearer',
    });
  });

  it('keeps YAML scalars as strings (a Slack client id is not a float)', () => {
    const providers = yaml(
      'providers:\n  slack:\n    preset: slack\n    clientId: 123456789012.123456789012\n    clientSecret: x\n',
    );
    expect(providers.get('slack')!.clientId).toBe('123456789012.123456789012');
  });

  it('supports ${VAR:-default} and $$ escapes; authMethod none needs no secret', () => {
    const providers = yaml(`
providers:
  pub:
    tokenUrl: \${IDP_URL:-https://idp.example.com/token}
    clientId: "$\${literal}"
    authMethod: none
`);
    expect(providers.get('pub')).toMatchObject({
      tokenUrl: 'https://idp.example.com/token',
      clientId: '${literal}',
      authMethod: 'none',
    });
    expect(providers.get('pub')!.clientSecret).toBeUndefined();
  });

  it.each([
    ['missing env var', 'clientSecret: ${NOPE}', 'provider "p": clientSecret: environment variable NOPE is not set'],
    ['empty env var', 'clientSecret: ${EMPTY}', 'provider "p": clientSecret: environment variable EMPTY is not set'],
    ['unknown field', 'clientSecret: x\n    clientSecrett: y', 'provider "p": clientSecrett: unknown field'],
    [
      'threshold 1',
      'clientSecret: x\n    threshold: 1',
      'provider "p": threshold: must be between 0 and 1 (exclusive)',
    ],
    [
      'threshold 0',
      'clientSecret: x\n    threshold: 0',
      'provider "p": threshold: must be between 0 and 1 (exclusive)',
    ],
    ['threshold text', 'clientSecret: x\n    threshold: high', 'provider "p": threshold: must be a number'],
    ['no secret', 'authMethod: client_secret_post', 'provider "p": clientSecret: required unless authMethod is none'],
    [
      'bad auth',
      'clientSecret: x\n    authMethod: jwt',
      'provider "p": authMethod: must be one of client_secret_basic, client_secret_post, none',
    ],
    ['bad preset', 'clientSecret: x\n    preset: gitlab', 'provider "p": preset: must be one of github'],
    ['reserved param', 'clientSecret: x\n    extraParams: { scope: a }', 'provider "p": extraParams.scope: reserved'],
    ['bad scope', 'clientSecret: x\n    scopes: ["a b"]', 'provider "p": scopes[0]: must be one scope without spaces'],
    ['maxConcurrency', 'clientSecret: x\n    maxConcurrency: 0', 'provider "p": maxConcurrency: must be at least 1'],
    [
      'onDemandCooldownSeconds',
      'clientSecret: x\n    onDemandCooldownSeconds: -1',
      'provider "p": onDemandCooldownSeconds: must be 0 or more',
    ],
    [
      'bad allowed scope',
      'clientSecret: x\n    allowedScopes: ["a b"]',
      'provider "p": allowedScopes[0]: must be one scope without spaces',
    ],
  ])('%s', (_name, field, expected) => {
    const error = errorOf(() =>
      yaml(`providers:\n  p:\n    tokenUrl: https://idp/token\n    clientId: c\n    ${field}\n`),
    );
    expect(error.message).toContain(`providers file /x.yaml: ${expected}`);
    expect(error.issues[0]!.provider).toBe('p');
  });

  it('keeps allowedScopes as given; without it a provider has none of its own (connect then allows its scopes)', () => {
    const providers = yaml(
      'providers:\n  p:\n    tokenUrl: https://idp/token\n    clientId: c\n    clientSecret: x\n    scopes: [read]\n    allowedScopes: [read, write]\n  q:\n    tokenUrl: https://idp/token\n    clientId: c\n    clientSecret: x\n',
    );
    expect(providers.get('p')!.allowedScopes).toEqual(['read', 'write']);
    expect(providers.get('q')!.allowedScopes).toBeUndefined();
  });

  it('names provider and field for missing clientId and tokenUrl, listing every issue', () => {
    const error = errorOf(() =>
      yaml(
        'providers:\n  github:\n    preset: github\n    clientSecret: x\n  other:\n    clientId: c\n    clientSecret: x\n',
      ),
    );
    expect(error.message).toBe(
      'providers file /x.yaml: provider "github": clientId: required; provider "other": tokenUrl: required',
    );
  });

  it('rejects what only the merged preset shows', () => {
    const ms = errorOf(() => yaml('providers:\n  ms:\n    preset: microsoft\n    clientId: c\n    clientSecret: x\n'));
    expect(ms.message).toContain('provider "ms": tokenUrl: required (or extraParams.tenant for preset microsoft)');
    expect(ms.message).toContain('provider "ms": scopes: required by preset microsoft');
    const url = errorOf(() =>
      yaml('providers:\n  p:\n    tokenUrl: ftp://idp/token\n    clientId: c\n    clientSecret: x\n'),
    );
    expect(url.message).toContain('provider "p": tokenUrl: must be an http(s) URL');
    const cc = errorOf(() =>
      yaml(
        'providers:\n  p:\n    tokenUrl: https://idp/t\n    clientId: c\n    authMethod: none\n    grant: client_credentials\n',
      ),
    );
    expect(cc.message).toContain('provider "p": authMethod: none cannot authenticate');
  });

  it('rejects bad provider ids, unknown top-level keys and a missing providers map', () => {
    expect(errorOf(() => yaml('providers:\n  "bad.id":\n    clientId: c\n')).message).toContain(
      'provider "bad.id": provider id must match',
    );
    expect(errorOf(() => yaml('version: 1\nproviders: {}\n')).message).toBe(
      'providers file /x.yaml: version: unknown field',
    );
    expect(errorOf(() => yaml('other: 1\n')).message).toBe('providers file /x.yaml: other: unknown field');
    expect(errorOf(() => yaml('providers: []\n')).message).toContain('providers: required, a map');
    expect(errorOf(() => yaml('- a\n')).message).toContain('must be a map');
  });

  it('never quotes a value from the file, even in parse errors', () => {
    const secretLine = 'providers:\n  p:\n    clientSecret: "gh-s3cret-value\n    clientId: [unclosed\n';
    const yamlError = errorOf(() => yaml(secretLine));
    expect(yamlError.message).toMatch(/^providers file \/x\.yaml: invalid YAML \(/);
    expect(yamlError.message).not.toContain('s3cret');
    const jsonError = errorOf(() =>
      parseProvidersDocument('{"providers": {"p": {"clientSecret": "gh-s3cret-value",}}}', 'json', env),
    );
    expect(jsonError.message).toBe('providers file: invalid JSON');
    const typeError = errorOf(() =>
      yaml('providers:\n  p:\n    tokenUrl: https://idp/t\n    clientId: c\n    clientSecret: [gh-s3cret-value]\n'),
    );
    expect(typeError.message).toContain('provider "p": clientSecret: must be a string');
    expect(typeError.message).not.toContain('s3cret');
    const credsUrl = errorOf(() =>
      yaml('providers:\n  p:\n    tokenUrl: https://u:gh-s3cret-value@idp/t\n    clientId: c\n    clientSecret: x\n'),
    );
    expect(credsUrl.message).toContain('tokenUrl: must not contain credentials');
    expect(credsUrl.message).not.toContain('s3cret');
  });
});

describe('connect-flow fields', () => {
  const base = (fields: string) =>
    `providers:\n  p:\n    tokenUrl: https://idp.example.com/token\n    clientId: c\n    clientSecret: x\n    ${fields}\n`;

  it('presets fill authorizationUrl, authorizeParams and issuer, derived from the token URL where it varies', () => {
    const providers = yaml(`
providers:
  github: { preset: github, clientId: c, clientSecret: x }
  google: { preset: google, clientId: c, clientSecret: x }
  ms: { preset: microsoft, clientId: c, clientSecret: x, scopes: ["https://graph.microsoft.com/Mail.Read"], extraParams: { tenant: common } }
  a0: { preset: auth0, clientId: c, clientSecret: x, extraParams: { domain: acme.eu.auth0.com } }
  okta: { preset: okta, tokenUrl: https://acme.okta.com/oauth2/aus123/v1/token, clientId: c, clientSecret: x }
  slack: { preset: slack, clientId: c, clientSecret: x, authorizeParams: { user_scope: "chat:write" } }
  plain: { tokenUrl: https://idp.example.com/token, clientId: c, clientSecret: x }
`);
    expect(providers.get('github')).toMatchObject({ authorizationUrl: 'https://github.com/login/oauth/authorize' });
    expect(providers.get('github')!.issuer).toBeUndefined();
    expect(providers.get('google')).toMatchObject({
      authorizationUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
      authorizeParams: { access_type: 'offline', prompt: 'consent' },
      issuer: 'https://accounts.google.com',
    });
    expect(providers.get('ms')).toMatchObject({
      authorizationUrl: 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize',
      scopes: ['offline_access', 'https://graph.microsoft.com/Mail.Read'],
    });
    expect(providers.get('ms')!.issuer).toBeUndefined();
    expect(providers.get('a0')).toMatchObject({
      authorizationUrl: 'https://acme.eu.auth0.com/authorize',
      issuer: 'https://acme.eu.auth0.com/',
    });
    expect(providers.get('okta')).toMatchObject({
      authorizationUrl: 'https://acme.okta.com/oauth2/aus123/v1/authorize',
      issuer: 'https://acme.okta.com/oauth2/aus123',
    });
    expect(providers.get('slack')).toMatchObject({
      authorizationUrl: 'https://slack.com/oauth/v2/authorize',
      authorizeParams: { user_scope: 'chat:write' },
    });
    const plain = providers.get('plain')!;
    expect([plain.authorizationUrl, plain.authorizeParams, plain.issuer, plain.allowedReturnOrigins]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('microsoft: offline_access is added once, and not for client_credentials', () => {
    const providers = yaml(`
providers:
  ms: { preset: microsoft, clientId: c, clientSecret: x, scopes: [openid, offline_access], extraParams: { tenant: common } }
  cc: { preset: microsoft, grant: client_credentials, clientId: c, clientSecret: x, scopes: ["https://graph.microsoft.com/.default"], extraParams: { tenant: common } }
`);
    expect(providers.get('ms')!.scopes).toEqual(['openid', 'offline_access']);
    expect(providers.get('cc')!.scopes).toEqual(['https://graph.microsoft.com/.default']);
  });

  it('the file wins over the preset and merges authorizeParams; origins are kept', () => {
    const providers = yaml(`
providers:
  google:
    preset: google
    clientId: c
    clientSecret: x
    authorizationUrl: https://accounts.example.test/auth
    issuer: https://accounts.example.test
    authorizeParams: { prompt: select_account, hd: example.com }
    allowedReturnOrigins: ["https://app.example.com", "http://localhost:3000"]
`);
    expect(providers.get('google')).toMatchObject({
      authorizationUrl: 'https://accounts.example.test/auth',
      issuer: 'https://accounts.example.test',
      authorizeParams: { access_type: 'offline', prompt: 'select_account', hd: 'example.com' },
      allowedReturnOrigins: ['https://app.example.com', 'http://localhost:3000'],
    });
  });

  it.each([
    ['authorizationUrl scheme', 'authorizationUrl: ftp://idp/authorize', 'authorizationUrl: must be an http(s) URL'],
    [
      'authorizationUrl credentials',
      'authorizationUrl: https://u:pw@idp/authorize',
      'authorizationUrl: must not contain credentials',
    ],
    ['authorizationUrl not a URL', 'authorizationUrl: idp/authorize', 'authorizationUrl: must be an http(s) URL'],
    [
      'reserved authorizeParam',
      'authorizeParams: { redirect_uri: "https://evil" }',
      'authorizeParams.redirect_uri: reserved',
    ],
    [
      'reserved code_challenge_method',
      'authorizeParams: { code_challenge_method: plain }',
      'authorizeParams.code_challenge_method: reserved',
    ],
    ['reserved scope', 'authorizeParams: { scope: a }', 'authorizeParams.scope: reserved'],
    ['authorizeParams list', 'authorizeParams: [a]', 'authorizeParams: must be a map'],
    ['issuer not a URL', 'issuer: accounts', 'issuer: must be an http(s) URL'],
    ['issuer with query', 'issuer: "https://idp/?x=1"', 'issuer: must have no query or fragment'],
    [
      'origin with path',
      'allowedReturnOrigins: ["https://app.example.com/done"]',
      'allowedReturnOrigins[0]: must be exactly an origin',
    ],
    [
      'origin trailing slash',
      'allowedReturnOrigins: ["https://app.example.com/"]',
      'allowedReturnOrigins[0]: must be exactly an origin',
    ],
    [
      'origin wildcard',
      'allowedReturnOrigins: ["https://ok.example.com", "https://*.example.com"]',
      'allowedReturnOrigins[1]: must be exactly an origin (no wildcards)',
    ],
    [
      'origin scheme',
      'allowedReturnOrigins: ["javascript:alert(1)"]',
      'allowedReturnOrigins[0]: must be an http(s) origin',
    ],
    [
      'origin default port',
      'allowedReturnOrigins: ["https://app.example.com:443"]',
      'allowedReturnOrigins[0]: must be exactly an origin',
    ],
    [
      'origin upper case',
      'allowedReturnOrigins: ["https://App.example.com"]',
      'allowedReturnOrigins[0]: must be exactly an origin',
    ],
    ['origins not a list', 'allowedReturnOrigins: https://app.example.com', 'allowedReturnOrigins: must be a list'],
  ])('%s', (_name, fields, expected) => {
    const error = errorOf(() => yaml(base(fields)));
    expect(error.message).toContain(`provider "p": ${expected}`);
  });

  it('a number as an authorizeParams value is refused (JSON keeps types)', () => {
    const error = errorOf(() =>
      parseProvidersDocument(
        JSON.stringify({
          providers: {
            p: { tokenUrl: 'https://idp/t', clientId: 'c', clientSecret: 'x', authorizeParams: { max_age: 60 } },
          },
        }),
        'json',
        env,
      ),
    );
    expect(error.message).toContain('provider "p": authorizeParams.max_age: must be a string');
  });
});

describe('interpolateString', () => {
  it('does not echo a broken expression (it may be inside a secret)', () => {
    expect(interpolateString('abc${oops', {})).toEqual({ ok: false, message: 'unterminated ${…} expression' });
    const bad = interpolateString('x${not valid}', {});
    expect(bad.ok).toBe(false);
    expect(JSON.stringify(bad)).not.toContain('not valid');
    expect(interpolateString('a$b ${A}${B:-d}', { A: '1' })).toEqual({ ok: true, value: 'a$b 1d' });
  });
});

describe("interpolation may not read Tokenkeeper's own settings", () => {
  const own = {
    ...env,
    TOKEN_ENCRYPTION_KEYS: 'k1:c2VjcmV0LWtleS1tYXRlcmlhbA==',
    DATABASE_URL: 'postgres://u:db-s3cret@db/tk',
    NATS_PASS: 'nats-s3cret',
    NATS_URL: 'nats://u:nats-s3cret@n:4222',
    EVENT_SIGNING_KEY: 'signing-s3cret',
    PGPASSWORD: 'pg-s3cret',
    AUDIT_DATABASE_URL: 'postgres://u:audit-s3cret@db/audit',
    LOG_LEVEL: 'info',
  };
  const provider = (secret: string) =>
    `providers:\n  idp:\n    tokenUrl: https://idp/t\n    clientId: c\n    clientSecret: ${secret}\n`;

  it.each([
    'TOKEN_ENCRYPTION_KEYS',
    'DATABASE_URL',
    'NATS_PASS',
    'NATS_URL',
    'EVENT_SIGNING_KEY',
    'PGPASSWORD',
    'AUDIT_DATABASE_URL',
    'LOG_LEVEL',
    'token_encryption_keys',
  ])('${%s} is refused, naming provider, field and variable, never the value', (name) => {
    const error = errorOf(() =>
      yaml(provider(`\${${name}}`), { ...own, token_encryption_keys: own.TOKEN_ENCRYPTION_KEYS }),
    );
    expect(error.message).toContain('provider "idp": clientSecret:');
    expect(error.message).toContain(name);
    expect(error.message).toMatch(/Tokenkeeper's own settings/);
    for (const value of Object.values(own)) if (value.length > 8) expect(error.message).not.toContain(value);
    expect(error.message).not.toMatch(/s3cret|c2VjcmV0/);
  });

  it('a default does not get around the rule, and other variables still work', () => {
    expect(errorOf(() => yaml(provider('x${TOKEN_ENCRYPTION_KEYS:-fallback}'), own)).message).toContain(
      'TOKEN_ENCRYPTION_KEYS',
    );
    expect(yaml(provider('${GH_SECRET}'), own).get('idp')!.clientSecret!.reveal()).toBe('gh-s3cret-value');
    expect(yaml(provider('$${TOKEN_ENCRYPTION_KEYS}'), own).get('idp')!.clientSecret!.reveal()).toBe(
      '${TOKEN_ENCRYPTION_KEYS}',
    );
  });

  it('covers every variable the refresher and the audit app read', () => {
    for (const name of [...ENV_VARIABLES, ...AUDIT_ENV_VARIABLES]) expect(isReservedVariable(name), name).toBe(true);
    for (const name of ['GITHUB_CLIENT_SECRET', 'IDP_SECRET', 'GOOGLE_CLIENT_ID', 'HOME'])
      expect(isReservedVariable(name), name).toBe(false);
  });
});

describe('loadProvidersFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'providers-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('picks the format from the extension and names the path', () => {
    const yamlPath = join(dir, 'p.yml');
    writeFileSync(yamlPath, 'providers:\n  g:\n    preset: google\n    clientId: c\n    clientSecret: ${GH_SECRET}\n');
    expect(loadProvidersFile(yamlPath, env).get('g')!.tokenUrl).toBe('https://oauth2.googleapis.com/token');
    const jsonPath = join(dir, 'p.json');
    writeFileSync(jsonPath, JSON.stringify({ providers: { g: { preset: 'google', clientId: 'c' } } }));
    expect(errorOf(() => loadProvidersFile(jsonPath, env)).message).toBe(
      `providers file ${jsonPath}: provider "g": clientSecret: required unless authMethod is none`,
    );
    expect(errorOf(() => loadProvidersFile(join(dir, 'missing.yaml'), env)).message).toContain(
      'cannot be read (ENOENT)',
    );
    expect(errorOf(() => loadProvidersFile(join(dir, 'p.toml'), env)).message).toContain(
      'must end in .yaml, .yml or .json',
    );
  });
});
