/*
 * `npm run docs:sqlstates`: renders the SQLSTATE table of docs/errors.md from
 * src/sqlstates.ts, the one list of them, and writes it between that page's
 * <!-- sqlstates:begin … --> and <!-- sqlstates:end --> markers;
 * and the Python client's table, python/src/rolesync/_sqlstates.py, from the
 * same list. `npm run docs:sqlstates -- --check` only compares, and exits 1
 * when either is stale. test/sqlstates.test.ts makes the same comparison.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { SQLSTATES, type Sqlstate } from "../../src/sqlstates.ts";

/** The page that holds the table (it was the README's until 0.2.0 moved the references to docs/). */
export const README = fileURLToPath(new URL("../../docs/errors.md", import.meta.url));
export const PYTHON_TABLE = fileURLToPath(new URL("../../python/src/rolesync/_sqlstates.py", import.meta.url));

/**
 * The Python client's table: each SQLSTATE with the name of its typed error
 * (None: passed through) and what to do. JSON strings are Python literals.
 */
export function renderPython(states: readonly Sqlstate[] = SQLSTATES): string {
  const lines = [
    "# Generated from src/sqlstates.ts by `npm run docs:sqlstates`: edit that file, not this one.",
    "# test/sqlstates.test.ts fails when the two differ.",
    '"""Every SQLSTATE rolesync raises or documents: the typed error it maps to (None: none), and what to do."""',
    "",
    "from typing import Dict, Optional, Tuple",
    "",
    "SQLSTATES: Dict[str, Tuple[Optional[str], str]] = {",
    ...states.map((s) => `    ${JSON.stringify(s.code)}: (${s.error ? JSON.stringify(s.error) : "None"}, ${JSON.stringify(s.todo)}),`),
    "}",
    "",
  ];
  return lines.join("\n");
}

export const BEGIN = "<!-- sqlstates:begin: generated from src/sqlstates.ts by `npm run docs:sqlstates`; edit that file, not this table -->";
export const END = "<!-- sqlstates:end -->";
const BEGIN_RE = /^<!-- sqlstates:begin\b.*-->$/m;
const END_RE = /^<!-- sqlstates:end -->$/m;

function cell(markdown: string): string {
  if (/[\r\n]/.test(markdown)) throw new Error(`a table cell cannot hold a line break: ${JSON.stringify(markdown)}`);
  return markdown.replace(/\|/g, "\\|");
}

/** The markdown table, one row per SQLSTATE in the list's order, ending with a newline. */
export function renderTable(states: readonly Sqlstate[] = SQLSTATES): string {
  const rows = [
    "| SQLSTATE | Raised by | When | What to do |",
    "| --- | --- | --- | --- |",
    ...states.map((s) => `| \`${s.code}\` | ${cell(s.from)} | ${cell(s.when)} | ${cell(s.todo)} |`),
  ];
  return rows.join("\n") + "\n";
}

/** Where the generated part of `readme` starts and ends (the text between the marker lines). */
function sectionBounds(readme: string): { start: number; end: number } {
  const begins = readme.match(new RegExp(BEGIN_RE.source, "gm")) ?? [];
  const ends = readme.match(new RegExp(END_RE.source, "gm")) ?? [];
  if (begins.length !== 1 || ends.length !== 1) {
    throw new Error(`docs/errors.md needs exactly one "<!-- sqlstates:begin … -->" line and one "${END}" line`);
  }
  const begin = BEGIN_RE.exec(readme)!;
  const start = begin.index + begin[0].length + 1;
  const end = END_RE.exec(readme)!.index;
  if (end < start) throw new Error(`docs/errors.md: "${END}" comes before "<!-- sqlstates:begin … -->"`);
  return { start, end };
}

/** The text between the README's markers, as it is. */
export function readmeSection(readme: string): string {
  const { start, end } = sectionBounds(readme);
  return readme.slice(start, end);
}

/** What goes between the markers: the table, with a blank line on either side. */
export function renderSection(states: readonly Sqlstate[] = SQLSTATES): string {
  return `\n${renderTable(states)}\n`;
}

/** `readme` with the section between its markers replaced by the rendered table. */
export function withRenderedSection(readme: string, states: readonly Sqlstate[] = SQLSTATES): string {
  const { start, end } = sectionBounds(readme);
  return readme.slice(0, start) + renderSection(states) + readme.slice(end);
}

function main(args: string[]): number {
  let stale = 0;
  for (const [file, render] of [
    [README, withRenderedSection] as const,
    [PYTHON_TABLE, () => renderPython()] as const,
  ]) {
    const text = readFileSync(file, "utf8");
    const updated = render(text);
    const name = path.relative(process.cwd(), file) || file;
    if (args.includes("--check")) {
      if (updated !== text) {
        console.error(`${name}: the SQLSTATE table differs from src/sqlstates.ts; run \`npm run docs:sqlstates\``);
        stale++;
      }
      continue;
    }
    if (updated !== text) writeFileSync(file, updated);
    console.log(`${name}: SQLSTATE table ${updated === text ? "already up to date" : "rewritten"} (${SQLSTATES.length} rows)`);
  }
  return stale ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    console.error(`docs:sqlstates: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
