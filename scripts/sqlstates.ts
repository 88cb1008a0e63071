/*
 * `npm run docs:sqlstates`: renders the README's SQLSTATE table from
 * src/sqlstates.ts, the one list of them, and writes it between the
 * README's <!-- sqlstates:begin … --> and <!-- sqlstates:end --> markers.
 * `npm run docs:sqlstates -- --check` only compares, and exits 1 when the
 * README is stale. test/sqlstates.test.ts makes the same comparison.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { SQLSTATES, type Sqlstate } from "../src/sqlstates.ts";

export const README = fileURLToPath(new URL("../README.md", import.meta.url));

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
    throw new Error(`README.md needs exactly one "<!-- sqlstates:begin … -->" line and one "${END}" line`);
  }
  const begin = BEGIN_RE.exec(readme)!;
  const start = begin.index + begin[0].length + 1;
  const end = END_RE.exec(readme)!.index;
  if (end < start) throw new Error(`README.md: "${END}" comes before "<!-- sqlstates:begin … -->"`);
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
  const readme = readFileSync(README, "utf8");
  const updated = withRenderedSection(readme);
  const name = path.relative(process.cwd(), README) || README;
  if (args.includes("--check")) {
    if (updated === readme) return 0;
    console.error(`${name}: the SQLSTATE table differs from src/sqlstates.ts; run \`npm run docs:sqlstates\``);
    return 1;
  }
  if (updated !== readme) writeFileSync(README, updated);
  console.log(`${name}: SQLSTATE table ${updated === readme ? "already up to date" : "rewritten"} (${SQLSTATES.length} rows)`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    console.error(`docs:sqlstates: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
