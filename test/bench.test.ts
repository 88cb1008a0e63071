/*
 * `npm run bench` at toy size, so that it cannot rot: every case runs, the
 * results, the report and the chart are written (to a temp dir, not docs/),
 * and `npm run bench:render` alone, given those results, writes the same
 * report and chart byte for byte.
 */
import { expect, test } from "vitest";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { runNode, testServer } from "./helpers.ts";

test("the bench runs every case at toy size and writes its results, report and chart; the renderer alone reproduces them", async () => {
  const out = mkdtempSync(path.join(os.tmpdir(), "rolesync-bench-test-"));
  const rendered = mkdtempSync(path.join(os.tmpdir(), "rolesync-bench-render-test-"));
  try {
    const run = await runNode(path.join(packageRoot, "scripts", "bench", "bench.ts"), ["--toy", "--out", out], {
      DATABASE_URL: testServer().adminUrl,
    });
    expect(run.code, run.output).toBe(0);
    const results = JSON.parse(readFileSync(path.join(out, "benchmarks.json"), "utf8"));
    expect(results.toy).toBe(true);
    expect(results.noop).toHaveLength(2);
    const md = readFileSync(path.join(out, "benchmarks.md"), "utf8");
    for (const heading of ["## Targets", "## 1. No-op login", "## 2. Changed login", "## 3. Contention", "## 4. Bloat", "## 5. Migration", "## The machine and the commands"]) {
      expect(md).toContain(heading);
    }
    expect(md).toContain("at toy size");
    expect(md).toMatch(/pgbench -n -M prepared/);
    // The no-op sync writes nothing, even at toy size.
    expect(md).toMatch(/No-op sync writes zero rows per call \| 0\.000 \/ 0\.000 \| met/);
    const svg = readFileSync(path.join(out, "benchmarks.svg"), "utf8");
    expect(svg).toMatch(/^<svg /);
    expect(svg).toContain("sync_role_memberships");

    // Rendering again from the JSON alone, without measuring, gives the same files.
    copyFileSync(path.join(out, "benchmarks.json"), path.join(rendered, "benchmarks.json"));
    const render = await runNode(path.join(packageRoot, "scripts", "bench", "bench-render.ts"), ["--out", rendered], {});
    expect(render.code, render.output).toBe(0);
    expect(readFileSync(path.join(rendered, "benchmarks.md"), "utf8")).toBe(md);
    expect(readFileSync(path.join(rendered, "benchmarks.svg"), "utf8")).toBe(svg);
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(rendered, { recursive: true, force: true });
  }
});

test("`--pg` outside 10 to 18 or an unknown argument: one line, exit 1, before any server or temp folder", async () => {
  const before = readdirSync(os.tmpdir()).filter((f) => f.startsWith("rolesync-bench-")).length;
  for (const [args, message] of [
    [["--toy", "--pg", "99"], "[bench] --pg 99: rolesync supports PostgreSQL 10 to 18; use one of 10, 11, 12, 13, 14, 15, 16, 17, 18 (17, the default, needs no download)"],
    [["--pg"], "[bench] --pg needs a PostgreSQL major version (10 to 18), e.g. `npm run bench -- --pg 15`"],
    [["--toy", "--wat"], "[bench] unknown argument --wat: the bench takes --toy, --out DIR and --pg N"],
  ] as const) {
    const run = await runNode(path.join(packageRoot, "scripts", "bench", "bench.ts"), [...args], { DATABASE_URL: undefined });
    expect(run.code, run.output).toBe(1);
    expect(run.stderr.trim()).toBe(message);
  }
  expect(readdirSync(os.tmpdir()).filter((f) => f.startsWith("rolesync-bench-")).length).toBe(before);
});
