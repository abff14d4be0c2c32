import type { AuditRecord, CredentialView, TokenView } from '@tokenkeeper/contracts';

/** Where a command writes, and how: colour only on a TTY without NO_COLOR; JSON when asked. */
export interface Output {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  json: boolean;
  color: boolean;
  /** stderr is a terminal: progress lines are worth drawing. */
  interactive: boolean;
}

export function createOutput(json: boolean, env: NodeJS.ProcessEnv = process.env): Output {
  const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    json,
    color: Boolean(process.stdout.isTTY) && !noColor && env.TERM !== 'dumb',
    interactive: Boolean(process.stderr.isTTY),
  };
}

type Colour = 'red' | 'green' | 'yellow' | 'dim' | 'bold' | 'cyan';
const ANSI: Record<Colour, [number, number]> = {
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
  dim: [2, 22],
  bold: [1, 22],
};

/** A table cell: its text (used for alignment) and an optional colour. */
export interface Cell {
  text: string;
  colour?: Colour;
}
type CellInput = string | number | Cell;

const toCell = (c: CellInput): Cell => (typeof c === 'object' ? c : { text: String(c) });

export function paint(text: string, colour: Colour | undefined, enabled: boolean): string {
  if (!enabled || !colour || text === '') return text;
  const [on, off] = ANSI[colour];
  return `\u001b[${on}m${text}\u001b[${off}m`;
}

/** JSON for scripts: indented on a terminal, one line otherwise. Both parse the same. */
export function printJson(out: Output, value: unknown): void {
  out.stdout.write(`${out.stdout.isTTY ? JSON.stringify(value, null, 2) : JSON.stringify(value)}\n`);
}

/** Aligned columns; padding is computed on the plain text, so colour never shifts a column. */
export function renderTable(headers: string[], rows: CellInput[][], color: boolean): string {
  const cells = rows.map((row) => row.map(toCell));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]?.text.length ?? 0)));
  const line = (row: Cell[]) =>
    row
      .map((cell, i) => {
        const padded = i === row.length - 1 ? cell.text : cell.text.padEnd(widths[i]);
        return paint(padded, cell.colour, color);
      })
      .join('  ')
      .trimEnd();
  const head = line(headers.map((h) => ({ text: h, colour: 'bold' as const })));
  return [head, ...cells.map(line)].join('\n') + '\n';
}

/** `key: value` lines with the values aligned. */
export function renderFields(fields: [string, CellInput | undefined][], color: boolean): string {
  const shown = fields.filter((f): f is [string, CellInput] => f[1] !== undefined);
  const width = Math.max(...shown.map(([k]) => k.length)) + 1;
  return (
    shown
      .map(
        ([key, value]) =>
          `${paint(`${key}:`.padEnd(width), 'dim', color)}  ${paint(toCell(value).text, toCell(value).colour, color)}`,
      )
      .join('\n') + '\n'
  );
}

/**
 * A secret as it may be shown: never the value, only its last four characters when
 * it is long enough that they give nothing away, and its length.
 */
export function maskSecret(value: string): string {
  return value.length >= 16 ? `****${value.slice(-4)} (${value.length} chars)` : `**** (${value.length} chars)`;
}

/** "in 59m", "3m ago", "2d ago"; `—` for null. */
export function relativeTime(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return iso;
  const delta = at - now;
  const abs = Math.abs(delta);
  // Whole units, rounded down: a token that expires in 59m59s does not "expire in 60m".
  const span =
    abs < 60_000
      ? `${Math.floor(abs / 1000)}s`
      : abs < 3_600_000
        ? `${Math.floor(abs / 60_000)}m`
        : abs < 172_800_000
          ? `${Math.floor(abs / 3_600_000)}h${Math.floor((abs % 3_600_000) / 60_000)}m`
          : `${Math.floor(abs / 86_400_000)}d`;
  return delta >= 0 ? `in ${span}` : `${span} ago`;
}

/** An absolute timestamp with its relative form: `2025-01-01T00:00:00.000Z (in 59m)`. */
export function when(iso: string | null | undefined, never = '—'): string {
  return iso ? `${iso} (${relativeTime(iso)})` : never;
}

export function statusCell(status: string): Cell {
  const colour: Colour = status === 'active' ? 'green' : status === 'failing' ? 'yellow' : 'red';
  return { text: status, colour };
}

function expiryCell(expiresAt: string | null): Cell {
  if (!expiresAt) return { text: 'never', colour: 'dim' };
  const text = relativeTime(expiresAt);
  return { text, colour: Date.parse(expiresAt) <= Date.now() ? 'red' : undefined };
}

export const CREDENTIAL_COLUMNS = [
  'TENANT',
  'CONNECTION',
  'PROVIDER',
  'STATUS',
  'VERSION',
  'EXPIRES',
  'NEXT REFRESH',
  'FAILURES',
  'LAST ERROR',
];

export function credentialRow(c: CredentialView): CellInput[] {
  return [
    c.tenant,
    c.connection,
    c.provider,
    statusCell(c.status),
    String(c.version),
    expiryCell(c.expiresAt),
    relativeTime(c.nextRefreshAt),
    c.failures > 0 ? { text: String(c.failures), colour: 'yellow' } : '0',
    c.lastError ? { text: c.lastError.code, colour: 'red' } : '',
  ];
}

export function renderCredential(c: CredentialView, color: boolean): string {
  return renderFields(
    [
      ['credential', { text: `${c.tenant}/${c.connection}`, colour: 'bold' }],
      ['provider', c.provider],
      ['status', statusCell(c.status)],
      ['version', String(c.version)],
      ['token type', c.tokenType],
      ['scope', c.scope],
      ['access token', c.hasAccessToken ? 'stored' : { text: 'none yet', colour: 'yellow' }],
      ['refresh token', c.hasRefreshToken ? 'stored' : 'none'],
      ['expires', when(c.expiresAt, 'never (no known expiry)')],
      ['next refresh', when(c.nextRefreshAt, 'none scheduled')],
      ['last refreshed', when(c.lastRefreshedAt, 'never')],
      ['failures', c.failures > 0 ? { text: String(c.failures), colour: 'yellow' } : '0'],
      ['last error', c.lastError ? { text: `${c.lastError.code}: ${c.lastError.message}`, colour: 'red' } : 'none'],
      ['created', c.createdAt],
      ['updated', c.updatedAt],
    ],
    color,
  );
}

export function renderToken(t: TokenView, showToken: boolean, color: boolean): string {
  return renderFields(
    [
      ['credential', { text: `${t.tenant}/${t.connection}`, colour: 'bold' }],
      ['provider', t.provider],
      ['version', String(t.version)],
      ['token type', t.tokenType],
      ['scope', t.scope],
      ['expires', when(t.expiresAt, 'never (no known expiry)')],
      [
        'access token',
        showToken ? t.accessToken : { text: `${maskSecret(t.accessToken)}  (--show-token to print it)`, colour: 'dim' },
      ],
    ],
    color,
  );
}

export const AUDIT_COLUMNS = [
  'AT',
  'TYPE',
  'TENANT',
  'CONNECTION',
  'PROVIDER',
  'VERSION',
  'OUTCOME',
  'CODE',
  'REPLICA',
  'MESSAGE',
];

export function auditRow(r: Partial<AuditRecord>): CellInput[] {
  const bad = r.type === 'failed' || r.type === 'reauth_required' || r.type === 'revoked';
  return [
    r.at ?? '',
    {
      text: String(r.type ?? ''),
      colour: bad ? 'red' : r.type === 'refreshed' || r.type === 'registered' ? 'green' : undefined,
    },
    r.tenant ?? '',
    r.connection ?? '',
    r.provider ?? '',
    r.version === undefined ? '' : String(r.version),
    r.outcome ?? '',
    r.code ?? '',
    r.replica ?? '',
    r.message ?? '',
  ];
}

/** `12,345` */
export const count = (n: number) => n.toLocaleString('en-US');
