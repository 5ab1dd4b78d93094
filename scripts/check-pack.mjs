// Checks what `npm pack` would publish: every export target, no sources, tests or data.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const [report] = JSON.parse(
  execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8' }),
);
const files = new Set(report.files.map((f) => f.path));
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const problems = [];

for (const [entry, target] of Object.entries(pkg.exports)) {
  const paths = typeof target === 'string' ? [target] : Object.values(target);
  // `default`, not `import`: require() of ES modules (Node 20.19+, 22.12+) looks for `require` or `default`.
  // `types` first, since TypeScript takes the first condition it knows.
  if (typeof target !== 'string') {
    const conditions = Object.keys(target);
    if (!conditions.includes('default'))
      problems.push(`export '${entry}' has no 'default' condition, so require() fails`);
    if (conditions.includes('types') && conditions[0] !== 'types')
      problems.push(`export '${entry}' lists 'types' after ${conditions[0]}`);
  }
  for (const path of paths)
    if (!files.has(path.replace(/^\.\//, '')))
      problems.push(`export '${entry}' points at ${path}, which is not packed`);
}
// The contract suite for storage authors ships as visitor-state/testing.
if (pkg.exports['./testing']?.default !== './dist/testing.js') problems.push("export './testing' is missing");
for (const required of ['package.json', 'README.md', 'LICENSE'])
  if (!files.has(required)) problems.push(`${required} is not packed`);
for (const file of files) {
  if (!/^(dist\/.*\.(js|d\.ts)|package\.json|README\.md|LICENSE)$/.test(file))
    problems.push(`${file} should not be packed`);
}

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`npm pack: ${files.size} files, ${report.size} bytes packed, every export present`);
