#!/usr/bin/env node
// Compile contracts/*.sol with the pinned solc-js and write one artifact per contract to
// src/seiwallet/chain/artifacts/<Name>.json (the Python package ships these as package data).
//
//   node scripts/compile-contracts.mjs           write the artifacts
//   node scripts/compile-contracts.mjs --check   exit 1 if a committed artifact is stale
//
// The output is deterministic (sorted keys, two-space indent, trailing newline), so the committed
// artifact can be checked byte for byte against what the sources compile to. Settings are pinned
// here, not taken from the environment: Sei runs the Prague (Pectra) EVM, and solc 0.8.37 would
// otherwise target a later one whose opcodes Sei may refuse.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, normalize, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CONTRACTS_DIR = join(ROOT, "contracts");
const NODE_MODULES = join(ROOT, "node_modules");
const ARTIFACTS_DIR = join(ROOT, "src", "seiwallet", "chain", "artifacts");

const SETTINGS = {
  evmVersion: "prague",
  optimizer: { enabled: true, runs: 200 },
};

const require = createRequire(import.meta.url);

// solc warns about every `tstore` (error code 2394). The only one we compile is OpenZeppelin's
// ReentrancyGuardTransient, which clears its slot at the end of each call — the use the warning
// itself calls safe — so that one warning is expected and not printed. Any other is.
const EXPECTED_WARNINGS = [
  { errorCode: "2394", file: "@openzeppelin/contracts/utils/TransientSlot.sol" },
];

function isExpected(problem) {
  return (
    problem.severity === "warning" &&
    EXPECTED_WARNINGS.some(
      (w) => w.errorCode === problem.errorCode && w.file === problem.sourceLocation?.file,
    )
  );
}

function fail(message) {
  process.stderr.write(`compile-contracts: ${message}\n`);
  process.exit(1);
}

/** JSON with object keys sorted at every level: the same input always gives the same bytes. */
function stableStringify(value) {
  const sortKeys = (v) => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v !== null && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sortKeys(v[k])]),
      );
    }
    return v;
  };
  return `${JSON.stringify(sortKeys(value), null, 2)}\n`;
}

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
}

/** Resolve an import (e.g. "@openzeppelin/contracts/...") to a file inside node_modules only. */
function findImport(path) {
  const candidate = resolve(NODE_MODULES, normalize(path));
  if (!candidate.startsWith(NODE_MODULES + sep)) {
    return { error: `import outside node_modules refused: ${path}` };
  }
  if (!existsSync(candidate)) {
    return { error: `import not found: ${path} (run \`npm ci\`)` };
  }
  return { contents: readFileSync(candidate, "utf8") };
}

function compile() {
  let solc;
  try {
    solc = require("solc");
  } catch {
    fail("solc-js is not installed: run `npm ci` in the repository root");
  }
  const files = readdirSync(CONTRACTS_DIR)
    .filter((f) => f.endsWith(".sol"))
    .sort();
  if (files.length === 0) fail(`no .sol files in ${relative(ROOT, CONTRACTS_DIR)}`);

  const sources = {};
  for (const file of files) {
    // Unit names are repository-relative so the metadata (and its hash in the bytecode) does not
    // depend on where the repository is checked out.
    sources[`contracts/${file}`] = { content: readFileSync(join(CONTRACTS_DIR, file), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: {
        "*": {
          "*": [
            "abi",
            "evm.bytecode.object",
            "evm.deployedBytecode.object",
            "evm.deployedBytecode.immutableReferences",
          ],
        },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const problems = (output.errors ?? []).filter((p) => !isExpected(p));
  for (const problem of problems) {
    process.stderr.write(problem.formattedMessage ?? `${problem.message}\n`);
  }
  if (problems.some((p) => p.severity === "error")) fail("compilation failed");

  const version = solc.version();
  const artifacts = new Map();
  for (const file of files) {
    const sourceName = `contracts/${file}`;
    const contractName = file.slice(0, -".sol".length);
    const compiled = output.contracts?.[sourceName]?.[contractName];
    // A file's artifact is the contract named after it; interfaces beside it need none.
    if (!compiled) fail(`${sourceName} defines no contract named ${contractName}`);
    const artifact = {
      contractName,
      sourceName,
      abi: compiled.abi,
      bytecode: `0x${compiled.evm.bytecode.object}`,
      deployedBytecode: `0x${compiled.evm.deployedBytecode.object}`,
      compiler: { version, settings: SETTINGS },
      sourceSha256: sha256(sources[sourceName].content),
    };
    // Where the runtime code holds immutables (zeros in `deployedBytecode`, filled in by the
    // constructor): a deployment check compares the code around them. Only written when there
    // are some, so the artifacts of contracts without immutables stay as they were.
    const immutables = Object.values(compiled.evm.deployedBytecode.immutableReferences ?? {})
      .flat()
      .map(({ start, length }) => ({ start, length }))
      .sort((a, b) => a.start - b.start);
    if (immutables.length > 0) artifact.deployedImmutableReferences = immutables;
    artifacts.set(`${contractName}.json`, stableStringify(artifact));
  }
  return artifacts;
}

function main() {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== "--check");
  if (unknown.length > 0) fail(`unknown argument ${unknown[0]} (usage: [--check])`);
  const check = args.includes("--check");

  const artifacts = compile();
  if (check) {
    const stale = [...artifacts].filter(([name, text]) => {
      const path = join(ARTIFACTS_DIR, name);
      return !existsSync(path) || readFileSync(path, "utf8") !== text;
    });
    if (stale.length > 0) {
      const names = stale.map(([name]) => relative(ROOT, join(ARTIFACTS_DIR, name))).join(", ");
      fail(`stale: ${names} (not what contracts/ compiles to): run \`node scripts/compile-contracts.mjs\``);
    }
    process.stdout.write(`compile-contracts: ${artifacts.size} artifact(s) up to date\n`);
    return;
  }
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  for (const [name, text] of artifacts) {
    writeFileSync(join(ARTIFACTS_DIR, name), text);
    process.stdout.write(`compile-contracts: wrote ${relative(ROOT, join(ARTIFACTS_DIR, name))}\n`);
  }
}

main();
