import { fmt } from './stats.js';

/**
 * What a target is checked against: the ratio subject/baseline, or the measured value
 * itself (RSS, lateness, refresh count).
 */
export type Target =
  | { on: 'ratio'; op: '>=' | '<='; limit: number }
  | { on: 'value'; op: '<' | '<=' | '=='; limit: number; unit?: string };

export interface BenchResult {
  /** Scenario number as in the issue (1–5). */
  scenario: number;
  name: string;
  value: number;
  baseline: number;
  unit: string;
  /** Lower values are better (latency, cost) rather than higher (throughput). */
  lowerIsBetter?: boolean;
  target?: Target;
  note?: string;
}

export interface ScoredResult extends BenchResult {
  ratio: number;
  pass: boolean | null;
}

export function score(result: BenchResult): ScoredResult {
  const ratio = result.baseline === 0 ? Number.NaN : result.value / result.baseline;
  let pass: boolean | null = null;
  const t = result.target;
  if (t) {
    const x = t.on === 'ratio' ? ratio : result.value;
    if (!Number.isFinite(x)) pass = false;
    else if (t.op === '>=') pass = x >= t.limit;
    else if (t.op === '<=') pass = x <= t.limit;
    else if (t.op === '<') pass = x < t.limit;
    else pass = x === t.limit;
  }
  return { ...result, ratio, pass };
}

export function describeTarget(t: Target | undefined): string {
  if (!t) return '-';
  if (t.on === 'ratio') return `ratio${t.op}${t.limit}`;
  return `value${t.op}${t.limit}${t.unit ?? ''}`;
}

/** `<name> value=<measured> baseline=<raw> ratio=<x> target=<y> PASS|FAIL` (INFO for lines without a target). */
export function formatLine(r: ScoredResult): string {
  const verdict = r.pass === null ? 'INFO' : r.pass ? 'PASS' : 'FAIL';
  const unit = r.unit ? r.unit : '';
  return `${r.name} value=${fmt(r.value)}${unit} baseline=${fmt(r.baseline)}${unit} ratio=${fmt(r.ratio)} target=${describeTarget(r.target)} ${verdict}${r.note ? `  # ${r.note}` : ''}`;
}

/** Collects results, printing each line as soon as it is known. */
export class Report {
  readonly results: ScoredResult[] = [];
  readonly notes: string[] = [];
  /** Raw series for the chart and the JSON file, by scenario. */
  readonly series: Record<string, unknown> = {};

  add(result: BenchResult): ScoredResult {
    const scored = score(result);
    this.results.push(scored);
    console.log(formatLine(scored));
    return scored;
  }

  note(text: string): void {
    this.notes.push(text);
    console.log(`# ${text}`);
  }

  markdownTable(): string {
    const rows = this.results.map(
      (r) =>
        `| ${r.scenario} | \`${r.name}\` | ${fmt(r.value)}${r.unit} | ${fmt(r.baseline)}${r.unit} | ${fmt(r.ratio)} | ${describeTarget(r.target)} | ${r.pass === null ? 'info' : r.pass ? 'PASS' : '**FAIL**'} |`,
    );
    return ['| # | name | value | baseline | ratio | target | |', '|---|---|---|---|---|---|---|', ...rows].join('\n');
  }
}
