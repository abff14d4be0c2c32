import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { AUDIT_ENV_SCHEMA } from '../apps/audit/src/config/audit-config.js';
import { ENV_SCHEMA } from '../apps/refresher/src/config/app-config.js';
import { REPO_ROOT } from './compile.js';

/** `NAME=value` (a default) or `#NAME=` (none), each under a one-line comment. */
function entries(): Array<{ name: string; value: string; comment: string | undefined }> {
  const lines = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8').split('\n');
  return lines.flatMap((line, i) => {
    const match = /^#?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!match) return [];
    const above = lines[i - 1];
    return [{ name: match[1], value: match[2], comment: above?.startsWith('# ') ? above : undefined }];
  });
}

const schemas = [ENV_SCHEMA, AUDIT_ENV_SCHEMA] as const;

/** The schemas' defaults of a setting, as the file would write them ('' for none). */
function defaultsOf(name: string): string[] {
  return schemas.flatMap((schema) => {
    const field = (schema.shape as Record<string, z.ZodType>)[name];
    if (!field) return [];
    const parsed = field.safeParse(undefined);
    return [parsed.success && parsed.data !== undefined ? String(parsed.data) : ''];
  });
}

describe('.env.example', () => {
  it('lists exactly the settings the apps read, each once', () => {
    const known = new Set(schemas.flatMap((schema) => Object.keys(schema.shape)));
    const listed = entries().map((e) => e.name);
    expect(listed.length).toBe(new Set(listed).size);
    expect([...listed].sort()).toEqual([...known].sort());
  });

  it('gives each its default (or none) and a one-line comment', () => {
    for (const { name, value, comment } of entries()) {
      expect(defaultsOf(name), name).toContain(value);
      expect(comment, `${name} has a comment`).toBeDefined();
    }
  });
});
