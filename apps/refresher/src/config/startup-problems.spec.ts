import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSigningSeed } from '@tokenkeeper/contracts';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAuditConfig } from '../../../audit/src/config/audit-config.js';
import { loadConfig } from './app-config.js';

/** The message a start is refused with ('' when it is accepted). */
function refusal(load: (env: Record<string, string>) => unknown, env: Record<string, string>): string {
  try {
    load(env);
    return '';
  } catch (error) {
    return (error as Error).message;
  }
}

const key = (kid: string) => `${kid}:${Buffer.alloc(32, 7).toString('base64')}`;

describe('one start names every problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };

  it('a bare production start names both missing keys at once', () => {
    const message = refusal(loadConfig, { NODE_ENV: 'production' });
    expect(message).toContain('TOKEN_ENCRYPTION_KEYS: required in production');
    expect(message).toContain('EVENT_SIGNING_KEY: required in production');
  });

  it('schema problems, cross-variable problems and production requirements come together, never a value', () => {
    const message = refusal(loadConfig, {
      NODE_ENV: 'production',
      HTTP_PORT: 'hunter2',
      NATS_USER: 'svc',
      TOKEN_ENCRYPTION_KEYS: 'k1:c2VjcmV0LXNob3J0',
      REPLY_SUBJECT_PREFIXES: 'token.x',
    });
    for (const name of ['HTTP_PORT:', 'NATS_USER and NATS_PASS', 'TOKEN_ENCRYPTION_KEYS:', 'EVENT_SIGNING_KEY:']) {
      expect(message).toContain(name);
    }
    expect(message).toContain('REPLY_SUBJECT_PREFIXES:');
    for (const value of ['hunter2', 'c2VjcmV0LXNob3J0', 'token.x']) expect(message).not.toContain(value);
  });

  it('reads each secret from <NAME>_FILE', () => {
    const seed = generateSigningSeed();
    const config = loadConfig({
      NODE_ENV: 'production',
      TOKEN_ENCRYPTION_KEYS_FILE: file('keys', `${key('k2')},${key('k1')}\n`),
      EVENT_SIGNING_KEY_FILE: file('seed', `${seed}\n`),
      DATABASE_URL_FILE: file('db', 'postgres://tk:pw@db:5432/tokenkeeper\n'),
      NATS_USER: 'svc',
      NATS_PASS_FILE: file('pass', 'pw\n'),
    });
    expect(config.encryption.keysSpec).toBe(`${key('k2')},${key('k1')}`);
    expect(config.signing.seed?.reveal()).toBe(seed);
    expect(config.database.url).toBe('postgres://tk:pw@db:5432/tokenkeeper');
    expect(config.nats.auth).toMatchObject({ kind: 'userpass', user: 'svc' });
    if (config.nats.auth.kind === 'userpass') expect(config.nats.auth.pass.reveal()).toBe('pw');
    const audit = loadAuditConfig({
      AUDIT_DATABASE_URL_FILE: file('adb', 'postgres://a@db/audit'),
      NATS_TOKEN_FILE: file('t', 'tok'),
    });
    expect(audit.database.url).toBe('postgres://a@db/audit');
    expect(audit.nats.auth.kind).toBe('token');
  });

  it('a file that cannot be read, an empty one, or a secret set both ways is a named problem', () => {
    const message = refusal(loadConfig, {
      NODE_ENV: 'production',
      TOKEN_ENCRYPTION_KEYS_FILE: join(dir, 'absent'),
      EVENT_SIGNING_KEY_FILE: join(dir, 'absent-seed'),
      NATS_TOKEN: 'hunter2',
      NATS_TOKEN_FILE: file('token', 'hunter3'),
      DATABASE_URL_FILE: file('empty', '\n'),
    });
    expect(message).toContain('TOKEN_ENCRYPTION_KEYS_FILE: cannot read');
    expect(message).toContain('EVENT_SIGNING_KEY_FILE: cannot read');
    expect(message).toContain('NATS_TOKEN and NATS_TOKEN_FILE: set one or the other');
    expect(message).toContain('DATABASE_URL_FILE:');
    expect(message).toContain('is empty');
    for (const value of ['hunter2', 'hunter3']) expect(message).not.toContain(value);
    // A file's bad content is named like the variable's, without the content.
    expect(refusal(loadConfig, { TOKEN_ENCRYPTION_KEYS_FILE: file('bad', 'k1:aHVudGVyNA==') })).toMatch(
      /TOKEN_ENCRYPTION_KEYS: key "k1" must be 32 bytes/,
    );
  });

  it('outside production the signing key file may be absent (a local run creates it)', () => {
    expect(refusal(loadConfig, { EVENT_SIGNING_KEY_FILE: join(dir, 'to-be-created') })).toBe('');
  });
});
