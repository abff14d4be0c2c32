// Lists import edges between the top-level folders of apps/refresher/src and reports
// every pair of folders that import each other (directly or through other folders).
// Usage: node tools/folder-cycles.mjs [root]   (exit code 1 when a cycle exists)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const root = resolve(process.argv[2] ?? 'apps/refresher/src');
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.ts') && !name.endsWith('.spec.ts')) files.push(path);
  }
})(root);

const folderOf = (path) => {
  const rel = relative(root, path).split(sep);
  return rel.length > 1 ? rel[0] : '(root)';
};
const edges = new Map();
for (const file of files) {
  const from = folderOf(file);
  for (const match of readFileSync(file, 'utf8').matchAll(/(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'/g)) {
    const target = resolve(dirname(file), match[1]);
    if (!target.startsWith(root)) continue;
    const to = folderOf(target);
    if (to === from) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    const list = edges.get(from);
    if (!list.has(to)) list.set(to, []);
    list.get(to).push(`${relative(root, file)} -> ${match[1]}`);
  }
}

const reach = (start) => {
  const seen = new Set();
  const stack = [start];
  while (stack.length) {
    for (const next of edges.get(stack.pop())?.keys() ?? []) if (!seen.has(next)) seen.add(next), stack.push(next);
  }
  return seen;
};
for (const [from, tos] of [...edges].sort()) console.log(`${from} -> ${[...tos.keys()].sort().join(', ')}`);
const cycles = [];
for (const from of edges.keys()) for (const to of edges.get(from).keys()) if (reach(to).has(from)) cycles.push(`${from} -> ${to} -> ... -> ${from}: ${edges.get(from).get(to)[0]}`);
if (cycles.length) {
  console.log(`\n${cycles.length} folder edge(s) on a cycle:\n${cycles.join('\n')}`);
  process.exit(1);
}
console.log('\nno folder imports from a folder that imports it back');
