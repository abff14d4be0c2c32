import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { dashboard } from '../../../tools/grafana-dashboard.js';
import { REPO_ROOT } from './ops-support.js';

/**
 * deploy/prometheus: the rules are valid (`promtool check rules`), each alert fires in its
 * unit test and stays quiet just short of it (`promtool test rules`), every alert has such a
 * test, and every series an alert reads is on the Grafana dashboard, whose series the
 * dashboard test finds on a running refresher's /metrics (or the audit app's registry).
 * Skipped where promtool is missing; CI installs Debian's prometheus package.
 */
const RULES = join(REPO_ROOT, 'deploy/prometheus/tokenkeeper-alerts.yml');
const TESTS = join(REPO_ROOT, 'deploy/prometheus/tokenkeeper-alerts.test.yml');
const run = promisify(execFile);

function hasPromtool(): boolean {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface Rule {
  alert: string;
  expr: string;
}
const rules: Rule[] = (parse(readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap(
  (g) => g.rules,
);

/** Metric names an expression reads (histogram series under their base name's _bucket). */
function seriesOf(expr: string): string[] {
  return [...expr.matchAll(/\b(tokenkeeper_[a-z_]+|up)\b(?=\s*[{[)\s=<>]|$)/g)].map((m) => m[1]!);
}

describe('ops: Prometheus alert rules', () => {
  it.skipIf(!hasPromtool())('pass `promtool check rules` and their unit tests (`promtool test rules`)', async () => {
    const checked = await run('promtool', ['check', 'rules', RULES]);
    expect(checked.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
    const tested = await run('promtool', ['test', 'rules', TESTS], { cwd: join(REPO_ROOT, 'deploy/prometheus') }).catch(
      (error: { stdout?: string; stderr?: string }) => {
        throw new Error(`promtool test rules failed:\n${error.stdout ?? ''}${error.stderr ?? ''}`);
      },
    );
    expect(tested.stdout).toContain('SUCCESS');
  });

  it('gives every alert a unit test that expects it to fire and one that expects silence', () => {
    const tests = (
      parse(readFileSync(TESTS, 'utf8')) as {
        tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
      }
    ).tests.flatMap((t) => t.alert_rule_test);
    expect(rules.length).toBeGreaterThanOrEqual(8);
    for (const { alert } of rules) {
      const cases = tests.filter((t) => t.alertname === alert);
      expect(
        cases.some((c) => c.exp_alerts.length > 0),
        `${alert} fires in a test`,
      ).toBe(true);
      expect(
        cases.some((c) => c.exp_alerts.length === 0),
        `${alert} stays silent in a test`,
      ).toBe(true);
    }
  });

  it('reads only series the dashboard shows (and so that the apps export), or the scrape target being up', () => {
    const shown = new Set(
      (dashboard() as { panels: { targets: { expr: string }[] }[] }).panels.flatMap((p) =>
        p.targets.flatMap((t) => t.expr.match(/tokenkeeper_[a-z_]+/g) ?? []),
      ),
    );
    for (const { alert, expr } of rules) {
      const series = seriesOf(expr);
      expect(series.length, alert).toBeGreaterThan(0);
      for (const name of series) if (name !== 'up') expect(shown, `${alert}: ${name}`).toContain(name);
    }
  });
});
