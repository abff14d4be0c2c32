/**
 * Summarises a V8 .cpuprofile (from `npm run bench -- --profile`, which runs the
 * refresher child with --cpu-prof): self time by function and by package, and the
 * inclusive time of functions whose name matches a filter.
 *
 *   node --import @swc-node/register/esm-register bench/support/profile-summary.ts <file.cpuprofile> [filter] [top]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** This checkout (any worktree), and where the bench's compiled children run from inside it. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ours = (url: string) =>
  url
    .replace(/^file:\/\//, '')
    .replace(ROOT, '')
    .replace(/^bench\/results\/build\//, '');

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

const [file, filter = '', topArg = '40'] = process.argv.slice(2);
if (!file) {
  console.error('usage: profile-summary.ts <file.cpuprofile> [filter] [top]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
};
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfTime = new Map<number, number>();
profile.samples.forEach((id, i) => selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...selfTime.values()].reduce((a, b) => a + b, 0);

const where = (n: ProfileNode) => {
  const url = ours(n.callFrame.url).replace(/.*node_modules\//, 'nm:');
  return `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`;
};
const pkg = (n: ProfileNode) => {
  const url = n.callFrame.url;
  const m = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  if (url.startsWith('file://') || url.startsWith('/')) return ours(url).split('/').slice(0, 2).join('/');
  return url ? 'node:internal' : n.callFrame.functionName || '(native)';
};

const agg = (key: (n: ProfileNode) => string) => {
  const m = new Map<string, number>();
  for (const [id, t] of selfTime) {
    const k = key(byId.get(id)!);
    m.set(k, (m.get(k) ?? 0) + t);
  }
  return [...m.entries()].sort((a, b) => b[1] - a[1]);
};
const pct = (t: number) => `${((100 * t) / total).toFixed(1).padStart(5)}%`;
const top = Number(topArg);
console.log(`total sampled ${(total / 1000).toFixed(0)} ms`);
console.log('\n-- self time by package');
for (const [k, t] of agg(pkg).slice(0, 20)) console.log(pct(t), k);
console.log('\n-- self time by function');
for (const [k, t] of agg(where).slice(0, top)) console.log(pct(t), k);
if (filter) {
  // Inclusive time: a sample counts for every distinct matching frame on its stack.
  const inclusive = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      const k = where(n);
      if (!seen.has(k) && k.includes(filter)) {
        seen.add(k);
        inclusive.set(k, (inclusive.get(k) ?? 0) + (profile.timeDeltas[i] ?? 0));
      }
    }
  });
  console.log(`\n-- inclusive time of frames matching "${filter}"`);
  for (const [k, t] of [...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(pct(t), k);
}
