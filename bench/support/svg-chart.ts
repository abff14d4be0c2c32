/**
 * The chart of docs/benchmarks.md, as hand-written SVG: throughput and latency of each
 * subject next to its raw baseline. Four panels of grouped bars, values printed on the
 * bars, a dashed line where a ratio target puts the bar that must reach it.
 */
import { fmt } from './stats.js';

interface Bar {
  name: string;
  value: number;
  color: string;
}

interface Group {
  label: string;
  bars: Bar[];
  /** Draw a dashed target line across this group at this value. */
  target?: { value: number; label: string };
}

interface Panel {
  title: string;
  unit: string;
  groups: Group[];
  log?: boolean;
  /** Bars of a group are stacked into one column (parts of a total) instead of side by side. */
  stacked?: boolean;
}

const STACK_COLORS: Record<string, string> = {
  refresher: '#1a73e8',
  postgres: '#336791',
  sandbox: '#f9ab00',
  'nats-server': '#34a853',
  bench: '#9aa0a6',
};

const BASELINE = '#9aa0a6';
const SUBJECT = '#1a73e8';
const SECOND_BASELINE = '#c5c9cd';
const FONT = 'font-family="DejaVu Sans, Arial, sans-serif"';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function panel(p: Panel, x: number, y: number, w: number, h: number): string {
  const out: string[] = [];
  const top = y + 34;
  const bottom = y + h - 40;
  const left = x + 10;
  const right = x + w - 10;
  const values = p.stacked
    ? p.groups.map((g) => g.bars.reduce((sum, b) => sum + b.value, 0))
    : p.groups
        .flatMap((g) => [...g.bars.map((b) => b.value), g.target?.value ?? 0])
        .filter((v) => Number.isFinite(v) && v > 0);
  const max = Math.max(...values, 1e-9);
  const min = p.log ? Math.min(...values) : 0;
  const lo = p.log ? Math.log10(min) - 0.3 : 0;
  const hi = p.log ? Math.log10(max) + 0.1 : max * 1.12;
  const scale = (v: number) => {
    if (!Number.isFinite(v) || v <= 0) return 0;
    const t = p.log ? (Math.log10(v) - lo) / (hi - lo) : v / hi;
    return Math.max(0, Math.min(1, t)) * (bottom - top);
  };
  out.push(`<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="#ffffff" stroke="#dadce0"/>`);
  out.push(`<text x="${x + 12}" y="${y + 22}" font-size="15" font-weight="bold" ${FONT}>${esc(p.title)}</text>`);
  out.push(
    `<text x="${right}" y="${y + 22}" font-size="11" text-anchor="end" fill="#5f6368" ${FONT}>${esc(p.unit)}${p.log ? ', log scale' : ''}</text>`,
  );
  out.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#5f6368"/>`);
  const groupW = (right - left) / p.groups.length;
  p.groups.forEach((g, gi) => {
    const gx = left + gi * groupW;
    if (p.stacked) {
      const barW = Math.min(70, groupW - 30);
      const bx = gx + (groupW - barW) / 2;
      let acc = 0;
      for (const b of g.bars) {
        const y0 = bottom - scale(acc);
        acc += b.value;
        const y1 = bottom - scale(acc);
        out.push(
          `<rect x="${bx}" y="${y1}" width="${barW}" height="${Math.max(0, y0 - y1)}" fill="${b.color}"><title>${esc(`${b.name}: ${fmt(b.value)} ${p.unit}`)}</title></rect>`,
        );
        if (y0 - y1 >= 11)
          out.push(
            `<text x="${bx + barW / 2}" y="${(y0 + y1) / 2 + 4}" font-size="9" text-anchor="middle" fill="#ffffff" ${FONT}>${esc(fmt(b.value))}</text>`,
          );
      }
      out.push(
        `<text x="${bx + barW / 2}" y="${bottom - scale(acc) - 4}" font-size="10" text-anchor="middle" ${FONT}>${esc(fmt(acc))}</text>`,
      );
      out.push(
        `<text x="${gx + groupW / 2}" y="${bottom + 15}" font-size="11" text-anchor="middle" ${FONT}>${esc(g.label)}</text>`,
      );
      return;
    }
    const barW = Math.min(46, (groupW - 16) / g.bars.length);
    const start = gx + (groupW - barW * g.bars.length) / 2;
    g.bars.forEach((b, bi) => {
      const bh = scale(b.value);
      const bx = start + bi * barW;
      out.push(
        `<rect x="${bx + 2}" y="${bottom - bh}" width="${barW - 4}" height="${bh}" fill="${b.color}"><title>${esc(`${b.name}: ${fmt(b.value)} ${p.unit}`)}</title></rect>`,
      );
      out.push(
        `<text x="${bx + barW / 2}" y="${bottom - bh - 4}" font-size="10" text-anchor="middle" ${FONT}>${esc(fmt(b.value))}</text>`,
      );
    });
    if (g.target) {
      const ty = bottom - scale(g.target.value);
      out.push(
        `<line x1="${gx + 6}" y1="${ty}" x2="${gx + groupW - 6}" y2="${ty}" stroke="#d93025" stroke-dasharray="5,3"/>`,
      );
      out.push(
        `<text x="${gx + 6}" y="${ty - 3}" font-size="9" text-anchor="start" fill="#d93025" ${FONT}>${esc(g.target.label)}</text>`,
      );
    }
    out.push(
      `<text x="${gx + groupW / 2}" y="${bottom + 15}" font-size="11" text-anchor="middle" ${FONT}>${esc(g.label)}</text>`,
    );
  });
  // Legend: the distinct bar names of the panel.
  const names = new Map<string, string>();
  for (const g of p.groups) for (const b of g.bars) names.set(b.name, b.color);
  let lx = left;
  for (const [name, color] of names) {
    out.push(`<rect x="${lx}" y="${y + h - 17}" width="10" height="10" fill="${color}"/>`);
    out.push(`<text x="${lx + 14}" y="${y + h - 8}" font-size="10" ${FONT}>${esc(name)}</text>`);
    lx += 24 + name.length * 6;
  }
  return out.join('\n');
}

export function renderChart(record: any): string {
  const s = record.series ?? {};
  const panels: Panel[] = [];
  if (s.tokenGet) {
    panels.push({
      title: 'token.get throughput vs bare NATS echo',
      unit: 'requests/s',
      groups: s.tokenGet.levels.map((l: any) => ({
        label: `${l.level} in flight`,
        bars: [
          { name: 'echo (raw nats.js)', value: l.echo, color: BASELINE },
          { name: 'refresher token.get', value: l.refresher, color: SUBJECT },
        ],
        target: l.level === 64 ? { value: 0.7 * l.echo, label: 'target 0.7x' } : undefined,
      })),
    });
    const lat = s.tokenGet.latency;
    const latGroup = (label: string, e: number, r: number, target?: Group['target']): Group => ({
      label,
      bars: [
        { name: 'echo (raw nats.js)', value: e, color: BASELINE },
        { name: 'refresher token.get', value: r, color: SUBJECT },
      ],
      target,
    });
    panels.push({
      title: 'token.get latency vs bare NATS echo',
      unit: 'ms',
      log: true,
      groups: [
        latGroup('p50 sequential', lat.sequential.echo.p50, lat.sequential.refresher.p50, {
          value: 1.3 * lat.sequential.echo.p50,
          label: 'max 1.3x',
        }),
        latGroup('p99 sequential', lat.sequential.echo.p99, lat.sequential.refresher.p99),
        latGroup(`p50 @${Math.round(lat.halfLoad.rate / 1000)}k/s`, lat.halfLoad.echo.p50, lat.halfLoad.refresher.p50),
        latGroup(`p99 @${Math.round(lat.halfLoad.rate / 1000)}k/s`, lat.halfLoad.echo.p99, lat.halfLoad.refresher.p99),
      ],
    });
  }
  if (s.cacheHit) {
    panels.push({
      title: 'client cache hit vs Map.get + expiry check',
      unit: 'million lookups/s',
      groups: [
        {
          label: 'synchronous',
          bars: [
            { name: 'Map.get + expiry', value: s.cacheHit.sync.bare / 1e6, color: BASELINE },
            { name: 'TokenClient', value: s.cacheHit.sync.client / 1e6, color: SUBJECT },
          ],
          target: { value: (0.5 * s.cacheHit.sync.bare) / 1e6, label: 'target 0.5x' },
        },
        {
          label: 'awaited',
          bars: [
            { name: 'Map.get + expiry', value: s.cacheHit.awaited.bare / 1e6, color: BASELINE },
            { name: 'TokenClient', value: s.cacheHit.awaited.client / 1e6, color: SUBJECT },
          ],
          target: { value: (0.5 * s.cacheHit.awaited.bare) / 1e6, label: 'target 0.5x' },
        },
      ],
    });
  }
  if (s.pipeline) {
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
    const http = med(s.pipeline.http);
    const update = med(s.pipeline.update);
    const pipe = med(s.pipeline.pipeline.map((p: any) => p.rate));
    panels.push({
      title: `refresh pipeline vs bare loops (${s.pipeline.concurrency} in flight)`,
      unit: 'operations/s',
      groups: [
        {
          label: 'refreshes / requests / updates per second',
          bars: [
            { name: 'undici POST', value: http, color: SECOND_BASELINE },
            { name: 'single-row UPDATE', value: update, color: BASELINE },
            { name: 'refresh pipeline', value: pipe, color: SUBJECT },
          ],
          target: { value: 0.5 * Math.min(http, update), label: 'target 0.5x slower' },
        },
      ],
    });
  }
  if (s.pipeline?.cpuPerOp) {
    const c = s.pipeline.cpuPerOp;
    const parts = (costs: Record<string, number>) =>
      Object.entries(costs)
        .filter(([k]) => k !== 'total')
        .map(([k, v]) => ({ name: k, value: v, color: STACK_COLORS[k] ?? '#777777' }));
    panels.push({
      title: 'CPU per operation, by process',
      unit: 'µs per op',
      stacked: true,
      groups: [
        { label: 'undici POST', bars: parts(c.http) },
        { label: 'single-row UPDATE', bars: parts(c.update) },
        { label: 'refresh pipeline', bars: parts(c.pipeline) },
      ],
    });
  }
  if (s.scale?.length === 2 && s.scale[0].lateness && s.scale[1].lateness) {
    const [small, large] = s.scale;
    const label = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`);
    const pair = (name: string, a: number, b: number, target?: Group['target']): Group => ({
      label: name,
      bars: [
        { name: `${label(small.size)} credentials`, value: a, color: BASELINE },
        { name: `${label(large.size)} credentials`, value: b, color: SUBJECT },
      ],
      target,
    });
    panels.push({
      title: `scale: ${label(small.size)} vs ${label(large.size)} stored credentials`,
      unit: 'ms',
      log: true,
      groups: [
        pair('claimDue (100 rows)', small.claimMs, large.claimMs, { value: 1.5 * small.claimMs, label: 'max 1.5x' }),
        pair('lateness p50', small.lateness.p50, large.lateness.p50),
        pair('lateness p99', small.lateness.p99, large.lateness.p99, { value: 1000, label: 'max 1 s' }),
      ],
    });
  }
  const cols = 2;
  const pw = 480;
  const ph = 300;
  const rows = Math.ceil(panels.length / cols);
  const width = cols * pw + (cols + 1) * 10;
  const height = rows * ph + (rows + 1) * 10 + 40;
  const m = record.machine ?? {};
  const subtitle = `${record.mode} run, ${String(record.startedAt ?? '')
    .slice(0, 16)
    .replace(
      'T',
      ' ',
    )} UTC; ${m.nproc}x ${m.cpuModel}, node ${m.node}, PostgreSQL ${m.postgres}, nats-server ${m.natsServer}; load average at start ${(m.loadAverage ?? []).join(' ')}`;
  const body = panels
    .map((p, i) => panel(p, 10 + (i % cols) * (pw + 10), 50 + Math.floor(i / cols) * (ph + 10), pw, ph))
    .join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">
<rect width="100%" height="100%" fill="#f8f9fa"/>
<text x="10" y="22" font-size="17" font-weight="bold" ${FONT}>Tokenkeeper benchmarks: subjects against their raw baselines</text>
<text x="10" y="40" font-size="11" fill="#5f6368" ${FONT}>${esc(subtitle)}</text>
${body}
</svg>
`;
}
