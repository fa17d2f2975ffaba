#!/usr/bin/env node
// Print the node_modules directories the installed commands need at run time (package.json "dependencies" and
// their dependencies, optional ones when present), one path relative to the repository a line, sorted; used by
// scripts/install.sh so that an install carries no dev tools (typescript, vitest). Exit 1 if one is missing.
// Usage: node scripts/runtime-deps.mjs REPO_DIR
import * as fs from 'node:fs'; import * as path from 'node:path';
const root = fs.realpathSync(process.argv[2]);
const nm = path.join(root, 'node_modules');
const seen = new Set(); const out = [];
/** The package directory `name` resolves to from package directory `from` (node's lookup upwards), or null. */
function find(from, name) {
  for (let d = from; ; d = path.dirname(d)) {
    const c = path.join(d, 'node_modules', name);
    if (fs.existsSync(path.join(c, 'package.json'))) return c;
    if (d === root || d === path.dirname(d)) return null;
  }
}
function visit(dir, deps) {
  for (const name of deps) {
    const p = find(dir, name.name);
    if (p === null) { if (!name.optional) { console.error(`missing ${name.name} from ${dir}`); process.exitCode = 1; } continue; }
    if (seen.has(p)) continue; seen.add(p); out.push(path.relative(root, p));
    const pkg = JSON.parse(fs.readFileSync(path.join(p, 'package.json'), 'utf8'));
    visit(p, [...Object.keys(pkg.dependencies ?? {}).map((n) => ({ name: n })), ...Object.keys(pkg.optionalDependencies ?? {}).map((n) => ({ name: n, optional: true }))]);
  }
}
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
visit(root, Object.keys(pkg.dependencies ?? {}).map((n) => ({ name: n })));
console.log(out.sort().join('\n'));
