/*
 * The published report is rendered, never edited: docs/benchmarks.md and
 * docs/benchmarks.svg must be what scripts/bench/bench-render.ts makes of
 * docs/benchmarks.json, and the targets they show come from TARGETS alone.
 * Needs no database.
 */
import { expect, test } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { TARGETS, chart, markdown, targets, type BenchResults } from "../scripts/bench/bench-render.ts";

const docs = path.join(packageRoot, "docs");
const results = JSON.parse(readFileSync(path.join(docs, "benchmarks.json"), "utf8")) as BenchResults;

test("docs/benchmarks.md and .svg are the renderer's output for docs/benchmarks.json (npm run bench:render)", () => {
  expect(readFileSync(path.join(docs, "benchmarks.md"), "utf8")).toBe(markdown(results));
  expect(readFileSync(path.join(docs, "benchmarks.svg"), "utf8")).toBe(chart(results.noop));
});

test("the chart's target line and the report's target rows read the same TARGETS", () => {
  const md = markdown(results);
  expect(chart(results.noop)).toContain(`target for sync: ${TARGETS.noopVsLimit}×`);
  expect(md).toContain(`No-op sync ≥ ${TARGETS.noopVsLimit}× the limit's throughput`);
  expect(md).toContain(`No-op sync ≥ ${TARGETS.noopVsCareful}× the careful hand-written sync`);
  expect(md).toContain(`No-op sync ≥ ${TARGETS.noopVsLegacy}× the legacy path (8 clients)`);
  expect(md).toContain(`≤ ${TARGETS.migrationVsPlainBuild}× a plain unique index build`);
});

test("every missed target says why in its row; a met one says nothing more", () => {
  const rows = targets(results);
  const md = markdown(results);
  for (const t of rows) {
    const line = md.split("\n").find((l) => l.startsWith(`| ${t.target} |`));
    expect(line, t.target).toBeDefined();
    if (t.met === false) {
      expect(t.why.length, t.target).toBeGreaterThan(20);
      expect(line).toContain(`| **missed** | ${t.why} |`);
    } else {
      expect(line).toMatch(/\| (met|reported) \|  \|$/);
    }
  }
  // The verdict follows the ratio: the same results with the 8-client sync at 6.5× and at 5.5× the legacy path.
  const at = (times: number) => {
    const r = structuredClone(results);
    for (const run of r.noop[1].runs.sync) run.tps = times * 1000;
    for (const run of r.noop[1].runs.legacy) run.tps = 1000;
    return targets(r).find((t) => t.target.endsWith("legacy path (8 clients)"))!;
  };
  expect(at(6.5)).toMatchObject({ met: true, measured: "6.5×" });
  expect(at(5.5)).toMatchObject({ met: false, measured: "5.5×" });
  expect(at(5.5).why).toMatch(/group commit/);
});
