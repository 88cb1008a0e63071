/*
 * The published report is rendered, never edited: docs/benchmarks.md and
 * docs/benchmarks.svg must be what scripts/bench/bench-render.ts makes of
 * docs/benchmarks.json, and the targets they show come from TARGETS alone.
 * Needs no database.
 */
import { expect, test } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { NETWORK_VARIANTS, TARGETS, chart, markdown, networkChart, scaleChart, targets, type BenchResults } from "../scripts/bench/bench-render.ts";

const docs = path.join(packageRoot, "docs");
const results = JSON.parse(readFileSync(path.join(docs, "benchmarks.json"), "utf8")) as BenchResults;

test("docs/benchmarks.md and .svg are the renderer's output for docs/benchmarks.json (npm run bench:render)", () => {
  expect(readFileSync(path.join(docs, "benchmarks.md"), "utf8")).toBe(markdown(results));
  expect(readFileSync(path.join(docs, "benchmarks.svg"), "utf8")).toBe(chart(results.noop));
  const network = path.join(docs, "benchmarks-network.svg");
  if (results.network) expect(readFileSync(network, "utf8")).toBe(networkChart(results.network));
  else expect(existsSync(network)).toBe(false);
  const scale = path.join(docs, "benchmarks-scale.svg");
  if (results.scale) expect(readFileSync(scale, "utf8")).toBe(scaleChart(results.scale));
  else expect(existsSync(scale)).toBe(false);
});

test("no two legend labels of either chart overlap", () => {
  // The bar chart's legend is a row: each label must end before the next swatch starts (7.2 px a character at most).
  const row = [...chart(results.noop).matchAll(/<rect x="(\d+)" y="\d+" width="12" height="12"[^>]*\/><text x="(\d+)"[^>]*>([^<]+)<\/text>/g)];
  expect(row.length).toBe(5);
  for (let i = 0; i + 1 < row.length; i++) expect(Number(row[i][2]) + row[i][3].length * 7.2).toBeLessThan(Number(row[i + 1][1]));
  expect(Number(row.at(-1)![2]) + row.at(-1)![3].length * 7.2).toBeLessThan(960);
  if (results.network) {
    // The network chart's legend is a column: one row per variant, 22 px apart.
    const ys = [...networkChart(results.network).matchAll(/<line x1="\d+" x2="\d+" y1="([\d.]+)" y2="[\d.]+" stroke="[^"]+" stroke-width="3"\/>/g)].map((m) => Number(m[1]));
    expect(ys.length).toBe(NETWORK_VARIANTS.length);
    for (let i = 0; i + 1 < ys.length; i++) expect(ys[i + 1] - ys[i]).toBeGreaterThanOrEqual(18);
  }
  if (results.scale) {
    // So is the scale chart's: one row per login.
    const ys = [...scaleChart(results.scale).matchAll(/<line x1="\d+" x2="\d+" y1="([\d.]+)" y2="[\d.]+" stroke="[^"]+" stroke-width="3"\/>/g)].map((m) => Number(m[1]));
    expect(ys.length).toBe(3);
    for (let i = 0; i + 1 < ys.length; i++) expect(ys[i + 1] - ys[i]).toBeGreaterThanOrEqual(18);
  }
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
