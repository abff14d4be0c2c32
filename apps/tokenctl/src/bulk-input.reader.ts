import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import {
  credentialId,
  isValidName,
  TokenRegisterRequestSchema,
  type TokenRegisterRequest,
} from '@tokenkeeper/contracts';
import { contractProblems, UsageError } from './cli.errors.js';

/** Fields that `register --file` flags may supply to entries that lack them. */
export interface BulkDefaults {
  tenant?: string;
  provider?: string;
  expiresIn?: number;
  scope?: string;
  tokenType?: string;
}

/** One valid credential of the file, with where it came from (for messages). */
export interface BulkEntry {
  line: number;
  /** 1-based position in a JSON array; undefined for JSON lines. */
  item?: number;
  request: TokenRegisterRequest;
}

export interface BulkScan {
  format: 'jsonl' | 'json';
  valid: number;
  /** The first problems, formatted `file:line: what`; `problemCount` has them all. */
  problems: string[];
  problemCount: number;
}

const MAX_PROBLEMS_SHOWN = 20;

/**
 * Reads a bulk import file: a JSON array of credentials, or JSON lines (one object a
 * line, blank lines ignored). JSON lines are streamed twice, once to validate everything
 * and count, once to send, so a file of millions of lines never sits in memory.
 */
export class BulkInput {
  private constructor(
    readonly path: string,
    readonly format: 'jsonl' | 'json',
    private readonly defaults: BulkDefaults,
  ) {}

  static async open(path: string, defaults: BulkDefaults): Promise<BulkInput> {
    let head: string;
    try {
      const handle = await open(path, 'r');
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(4096), 0, 4096, 0);
      await handle.close();
      head = buffer
        .subarray(0, bytesRead)
        .toString('utf8')
        .replace(/^\uFEFF/, '');
    } catch (error) {
      throw new UsageError(
        `cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        'check the path given to --file',
      );
    }
    return new BulkInput(path, head.trimStart().startsWith('[') ? 'json' : 'jsonl', defaults);
  }

  /** Pass 1: checks every entry against the contract and for duplicates; sends nothing. */
  async scan(): Promise<BulkScan> {
    const problems: string[] = [];
    let problemCount = 0;
    let valid = 0;
    const seen = new Map<string, number>();
    for await (const raw of this.raw()) {
      const where = this.where(raw.line, raw.item);
      let problem = raw.problem ?? null;
      let candidate: Record<string, unknown> | undefined;
      if (problem === null) {
        candidate = this.withDefaults(raw.value!);
        problem = contractProblems(TokenRegisterRequestSchema, candidate);
      }
      if (problem === null && candidate) {
        const id = credentialId(candidate as { tenant: string; connection: string });
        const first = seen.get(id);
        if (first !== undefined)
          problem = `${id} is already on line ${first} (entries are sent concurrently, so which one wins would be chance)`;
        else seen.set(id, raw.line);
      }
      if (problem === null) {
        valid++;
        continue;
      }
      problemCount++;
      if (problems.length < MAX_PROBLEMS_SHOWN) problems.push(`${where}${this.label(candidate)}: ${problem}`);
    }
    return { format: this.format, valid, problems, problemCount };
  }

  /** Pass 2: the valid entries, parsed by the contract schema, in file order. */
  async *entries(): AsyncGenerator<BulkEntry> {
    for await (const raw of this.raw()) {
      if (raw.problem) throw new UsageError(`${this.where(raw.line, raw.item)}: changed while importing`);
      const parsed = TokenRegisterRequestSchema.safeParse(this.withDefaults(raw.value!));
      if (!parsed.success) throw new UsageError(`${this.where(raw.line, raw.item)}: changed while importing`);
      yield { line: raw.line, item: raw.item, request: parsed.data };
    }
  }

  where(line: number, item?: number): string {
    return item === undefined ? `${this.path}:${line}` : `${this.path}:${line} (item ${item})`;
  }

  private label(candidate: Record<string, unknown> | undefined): string {
    return candidate && isValidName(candidate.tenant) && isValidName(candidate.connection)
      ? ` ${candidate.tenant}/${candidate.connection}`
      : '';
  }

  private withDefaults(value: Record<string, unknown>): Record<string, unknown> {
    const d = this.defaults;
    const out = { ...value };
    if (out.tenant === undefined && d.tenant !== undefined) out.tenant = d.tenant;
    if (out.provider === undefined && d.provider !== undefined) out.provider = d.provider;
    if (out.scope === undefined && d.scope !== undefined) out.scope = d.scope;
    if (out.tokenType === undefined && d.tokenType !== undefined) out.tokenType = d.tokenType;
    if (out.expiresIn === undefined && out.expiresAt === undefined && d.expiresIn !== undefined)
      out.expiresIn = d.expiresIn;
    return out;
  }

  private raw(): AsyncGenerator<RawEntry> {
    return this.format === 'json' ? this.rawArray() : this.rawLines();
  }

  private async *rawLines(): AsyncGenerator<RawEntry> {
    const lines = createInterface({ input: createReadStream(this.path, { encoding: 'utf8' }), crlfDelay: Infinity });
    let line = 0;
    for await (const text of lines) {
      line++;
      const trimmed = (line === 1 ? text.replace(/^\uFEFF/, '') : text).trim();
      if (trimmed === '') continue;
      yield parseObject(trimmed, line);
    }
  }

  private async *rawArray(): AsyncGenerator<RawEntry> {
    const text = (await readFile(this.path, 'utf8')).replace(/^\uFEFF/, '');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      // The parser's own message quotes the input, which may be a token: report the place only.
      const at = /position (\d+)/.exec((error as Error).message);
      const place = at ? lineAndColumn(text, Number(at[1])) : undefined;
      throw new UsageError(
        `${this.path}${place ? `:${place.line}` : ''}: not valid JSON${place ? ` (column ${place.column})` : ''}`,
        'give a JSON array of credential objects, or JSON lines (one object a line)',
      );
    }
    if (!Array.isArray(value))
      throw new UsageError(`${this.path}: a JSON file must hold an array of credential objects`);
    const lines = elementLines(text);
    for (let i = 0; i < value.length; i++) {
      const element: unknown = value[i];
      const line = lines[i] ?? 1;
      yield isPlainObject(element)
        ? { line, item: i + 1, value: element }
        : { line, item: i + 1, problem: 'must be a JSON object' };
    }
  }
}

interface RawEntry {
  line: number;
  item?: number;
  value?: Record<string, unknown>;
  problem?: string;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function parseObject(text: string, line: number): RawEntry {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const at = /position (\d+)/.exec((error as Error).message);
    return { line, problem: `not valid JSON${at ? ` (column ${Number(at[1]) + 1})` : ''}` };
  }
  return isPlainObject(value) ? { line, value } : { line, problem: 'must be a JSON object' };
}

function lineAndColumn(text: string, position: number): { line: number; column: number } {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  return { line, column: position - before.lastIndexOf('\n') };
}

/** The line on which each top-level element of a (valid) JSON array starts. */
function elementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '\n') line++;
    if (ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n') continue;
    if (depth === 1 && expectElement && ch !== ']') {
      lines.push(line);
      expectElement = false;
    }
    if (ch === '"') inString = true;
    else if (ch === '[' || ch === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (ch === ']' || ch === '}') depth--;
    else if (ch === ',' && depth === 1) expectElement = true;
  }
  return lines;
}
