import { adminSubject, type CredentialReply } from '@tokenkeeper/contracts';
import { hintForCode, UnreachableError, UsageError, type ExitCode } from './cli.errors.js';
import { BulkInput, type BulkDefaults, type BulkEntry } from './bulk-input.reader.js';
import type { NatsSession } from './nats.session.js';
import { count, paint, printJson, type Output } from './output.format.js';

export const DEFAULT_CONCURRENCY = 32;
const EXAMPLES_PER_CODE = 5;

/** One line on stderr, redrawn at most every 100 ms; only on a terminal. */
export class ProgressLine {
  private lastDraw = 0;
  private readonly started = Date.now();
  constructor(
    private readonly out: Output,
    private readonly label: string,
    private readonly total: number,
  ) {}

  update(done: number, failed: number, force = false): void {
    if (!this.out.interactive) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const fraction = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const width = 24;
    const filled = Math.floor(fraction * width);
    const bar = `${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? (filled === width ? '=' : '>') : ''}${' '.repeat(width - filled)}`;
    const rate = done / Math.max(0.001, (now - this.started) / 1000);
    const failedText = failed > 0 ? `  ${failed} failed` : '';
    this.out.stderr.write(
      `\r\u001b[2K${this.label} [${bar}] ${count(done)}/${count(this.total)} ${Math.floor(fraction * 100)}%  ${count(Math.round(rate))}/s${failedText}`,
    );
  }

  clear(): void {
    if (this.out.interactive) this.out.stderr.write('\r\u001b[2K');
  }
}

interface FailureGroup {
  count: number;
  hint: string;
  examples: { line: number; item?: number; tenant: string; connection: string; message: string }[];
}

export interface BulkSummary {
  ok: boolean;
  file: string;
  total: number;
  registered: number;
  failed: number;
  notSent: number;
  durationMs: number;
  failures: Record<string, FailureGroup>;
  /** Set when the import stopped early because NATS or the refresher went away. */
  stoppedBecause?: string;
}

/**
 * `register --file`: validates the whole file first (nothing is sent if any entry is
 * bad), then sends `token.register` with at most `concurrency` requests in flight,
 * and ends with a summary grouped by error code. Token values are never printed.
 */
export async function runBulkImport(
  session: () => Promise<NatsSession>,
  out: Output,
  options: { file: string; concurrency: number; defaults: BulkDefaults },
): Promise<ExitCode> {
  const input = await BulkInput.open(options.file, options.defaults);
  const scan = await input.scan();
  if (scan.problemCount > 0) {
    const more = scan.problemCount - scan.problems.length;
    throw new UsageError(
      `${count(scan.problemCount)} invalid ${scan.problemCount === 1 ? 'entry' : 'entries'} in ${options.file}; nothing was sent:\n  ${scan.problems.join('\n  ')}${more > 0 ? `\n  … and ${count(more)} more` : ''}`,
      'fix these lines and run again; each entry needs tenant, connection, provider (or --tenant/--provider) and may have accessToken, refreshToken, expiresIn|expiresAt, scope, tokenType',
    );
  }
  if (scan.valid === 0) throw new UsageError(`${options.file} holds no credentials`);

  const nats = await session();
  const summary: BulkSummary = {
    ok: false,
    file: options.file,
    total: scan.valid,
    registered: 0,
    failed: 0,
    notSent: 0,
    durationMs: 0,
    failures: {},
  };
  const progress = new ProgressLine(out, 'registering', scan.valid);
  const started = Date.now();
  const running = new Set<Promise<void>>();
  let sent = 0;

  const fail = (entry: BulkEntry, code: string, message: string) => {
    summary.failed++;
    const group = (summary.failures[code] ??= { count: 0, hint: hintForCode(code, {}), examples: [] });
    group.count++;
    if (group.examples.length < EXAMPLES_PER_CODE) {
      group.examples.push({
        line: entry.line,
        item: entry.item,
        tenant: entry.request.tenant,
        connection: entry.request.connection,
        message,
      });
    }
  };

  const send = async (entry: BulkEntry): Promise<void> => {
    const subject = adminSubject('register', entry.request.tenant, entry.request.connection);
    try {
      const reply = await nats.requestReply<CredentialReply>(subject, entry.request);
      if (reply?.ok === true) summary.registered++;
      else
        fail(
          entry,
          String(reply?.error?.code ?? 'invalid_reply'),
          String(reply?.error?.message ?? 'reply is not {ok, …}'),
        );
    } catch (error) {
      const unreachable = error instanceof UnreachableError ? error : nats.transportError(subject, error);
      fail(entry, 'nats', unreachable.message);
      // No responder, no connection or no reply in time: the next requests would fare no better.
      summary.stoppedBecause ??= `${unreachable.message}; ${unreachable.hint ?? ''}`;
    }
    progress.update(summary.registered + summary.failed, summary.failed);
  };

  for await (const entry of input.entries()) {
    if (summary.stoppedBecause) break;
    sent++;
    const task: Promise<void> = send(entry).finally(() => running.delete(task));
    running.add(task);
    if (running.size >= options.concurrency) await Promise.race(running);
  }
  await Promise.all(running);
  progress.update(summary.registered + summary.failed, summary.failed, true);
  progress.clear();

  summary.notSent = scan.valid - sent;
  summary.durationMs = Date.now() - started;
  summary.ok = summary.failed === 0 && summary.notSent === 0;
  if (out.json) printJson(out, summary);
  else out.stdout.write(renderSummary(summary, out.color));
  if (summary.ok) return 0;
  return summary.failures.nats || summary.notSent > 0 ? 3 : 1;
}

function renderSummary(s: BulkSummary, color: boolean): string {
  const seconds = (s.durationMs / 1000).toFixed(1);
  const rate = count(Math.round(s.registered / Math.max(0.001, s.durationMs / 1000)));
  const lines = [
    `${paint('registered', s.registered === s.total ? 'green' : undefined, color)} ${count(s.registered)} of ${count(s.total)} credentials from ${s.file} in ${seconds} s (${rate}/s)`,
  ];
  if (s.failed > 0) lines.push(paint(`failed ${count(s.failed)}:`, 'red', color));
  for (const [code, group] of Object.entries(s.failures).sort((a, b) => b[1].count - a[1].count)) {
    lines.push(`  ${paint(code, 'red', color)} × ${count(group.count)}`);
    for (const e of group.examples) {
      const where = e.item === undefined ? `line ${e.line}` : `line ${e.line} (item ${e.item})`;
      lines.push(`    ${where} ${e.tenant}/${e.connection}: ${e.message}`);
    }
    if (group.count > group.examples.length) lines.push(`    … and ${count(group.count - group.examples.length)} more`);
    if (code !== 'nats') lines.push(`    hint: ${group.hint}`);
  }
  if (s.notSent > 0) lines.push(paint(`not sent ${count(s.notSent)}: stopped early`, 'red', color));
  if (s.stoppedBecause) lines.push(`  ${s.stoppedBecause}`);
  return `${lines.join('\n')}\n`;
}
