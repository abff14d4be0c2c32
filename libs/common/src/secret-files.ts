import { readFileSync } from 'node:fs';
import { optionalText } from './env-config.js';

/**
 * `<NAME>_FILE`: a secret read from a file, the way container platforms (Docker and
 * Kubernetes secrets) mount them, so that the value never sits in the process environment
 * listing or in a compose file. Each app names its secrets once; this is the only reader.
 */

/** The `<NAME>_FILE` variables of `names`, for an app's zod schema (so the docs and checks know them). */
export function secretFileShape<const N extends string>(names: readonly N[]): Record<`${N}_FILE`, typeof optionalText> {
  return Object.fromEntries(names.map((name) => [`${name}_FILE`, optionalText])) as Record<
    `${N}_FILE`,
    typeof optionalText
  >;
}

export interface SecretFileOptions {
  /** Secrets whose file may be absent: it is created later (a local run's generated key). */
  mayBeAbsent?: readonly string[];
  /** For tests: how a file is read. */
  read?: (path: string) => string;
}

/**
 * Returns `env` with each `<NAME>_FILE` replaced by the file's content (trailing newlines
 * dropped). Each problem is a line in `problems` naming the variables and never a value:
 * both set, a file that cannot be read, an empty file.
 */
export function withSecretFiles(
  env: Record<string, string | undefined>,
  names: readonly string[],
  problems: string[],
  options: SecretFileOptions = {},
): Record<string, string | undefined> {
  const read = options.read ?? ((path: string) => readFileSync(path, 'utf8'));
  const out = { ...env };
  for (const name of names) {
    const fileVar = `${name}_FILE`;
    const path = env[fileVar]?.trim();
    if (!path) continue;
    if (env[name]?.trim()) {
      problems.push(`  ${name} and ${fileVar}: set one or the other, not both`);
      continue;
    }
    let content: string;
    try {
      content = read(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && options.mayBeAbsent?.includes(name)) continue;
      // The path is configuration, not a secret; the error code says why without any content.
      problems.push(`  ${fileVar}: cannot read ${path} (${code ?? 'unreadable'})`);
      continue;
    }
    const value = content.replace(/[\r\n]+$/, '');
    if (value.trim() === '') problems.push(`  ${fileVar}: ${path} is empty`);
    else out[name] = value;
  }
  return out;
}
