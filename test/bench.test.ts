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
import { databasesMadeBy, interruptWhen, runNode, testServer } from "./helpers.ts";

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
    for (const heading of ["## Targets", "## 1. No-op login", "## 2. Changed login", "## 3. Contention", "## 4. Bloat", "## 5. Migration", "## 6. Across a network", "## 7. At real table sizes", "## The machine and the commands"]) {
      expect(md).toContain(heading);
    }
    expect(md).toContain("at toy size");
    expect(md).toMatch(/pgbench -n -M prepared/);
    // The no-op sync writes nothing, even at toy size.
    expect(md).toMatch(/No-op sync writes zero rows per call \| 0\.000 \/ 0\.000 \| met/);
    const svg = readFileSync(path.join(out, "benchmarks.svg"), "utf8");
    expect(svg).toMatch(/^<svg /);
    expect(svg).toContain("sync_role_memberships");

    // Across a network: every variant at each round trip and connection count, each with the round trip it measured.
    expect(results.network.cells).toHaveLength(2 * 2 * 7);
    for (const cell of results.network.cells) {
      expect(cell.tps, `${cell.variant} at ${cell.targetMs} ms`).toBeGreaterThan(0);
      expect(cell.rttMs).toBeGreaterThan(0);
    }
    const statements = Object.fromEntries(results.network.cells.map((c: { variant: string; statements: number }) => [c.variant, c.statements]));
    expect(statements).toEqual({ limit: 1, sync: 1, changed: 1, diff: 3, legacy: 2, aleph: 23, plugin: 3 });
    expect(md).toMatch(/Across a network \(~0\.5 ms\): no-op login ≥ 0\.9× the bare read's rate per connection \(1 connection\) \| [\d.]+× at [\d.]+ ms \|/);
    // Aleph's whole callback, plugin off and on: each case at each round trip and connection count, no error,
    // and the plugin's login sends fewer statements than Aleph's.
    const callbacks = results.network.callbacks as { plugin: string; statements: number; errors: number; perConnection: number }[];
    expect(callbacks).toHaveLength(2 * 2 * 2); // at ~0.5 ms only, at toy size
    for (const c of callbacks) {
      expect(c.errors).toBe(0);
      expect(c.perConnection).toBeGreaterThan(0);
    }
    expect(Math.max(...callbacks.filter((c) => c.plugin === "on").map((c) => c.statements))).toBeLessThan(
      Math.min(...callbacks.filter((c) => c.plugin === "off").map((c) => c.statements)),
    );
    const networkSvg = readFileSync(path.join(out, "benchmarks-network.svg"), "utf8");
    expect(networkSvg).toContain("the plugin's login");

    // The scale curve: every size and shape, each login measured; the migration at each size, no failed login.
    const scale = results.scale as {
      sizes: number[];
      shapes: number[];
      points: { memberships: number; groupsPerUser: number; users: number; reads: { runs: Record<string, { tps: number; rowWrites: number; walBytes: number }[]> }; changed: { runs: Record<string, { tps: number; rowWrites: number; walBytes: number }[]> } }[];
      migrations: { memberships: number; writerErrors: string[]; writerWaitsMs: { count: number }; longestWaitStep: string | null }[];
    };
    expect(scale.sizes).toEqual([10_000, 50_000]);
    expect(scale.shapes).toEqual([5, 50]);
    expect(scale.points.map((p) => [p.memberships, p.groupsPerUser, p.users])).toEqual([
      [10_000, 5, 2_000], [10_000, 50, 200], [50_000, 5, 10_000], [50_000, 50, 1_000],
    ]);
    for (const p of scale.points) {
      for (const run of [...p.reads.runs.limit, ...p.reads.runs.sync, ...p.changed.runs.changed]) expect(run.tps).toBeGreaterThan(0);
      // The no-op writes nothing at any size; the changed login writes WAL.
      for (const run of p.reads.runs.sync) expect(run.rowWrites).toBe(0);
      // (WAL, not the row counters: before 15 the statistics collector may report them late.)
      for (const run of p.changed.runs.changed) expect(run.walBytes).toBeGreaterThan(0);
    }
    expect(scale.migrations.map((m) => m.memberships)).toEqual([10_000, 50_000]);
    for (const m of scale.migrations) {
      expect(m.writerErrors).toEqual([]);
      expect(m.writerWaitsMs.count).toBeGreaterThan(0);
      expect(m.longestWaitStep).toMatch(/^0000\d\d-|^the runner's start/);
    }
    expect(md).toMatch(/\| The no-op login's cost from 10k to 50k memberships grows ≤ 1\.5×, 5 groups per user \| [\d.]+× \(\d+ → \d+ µs\) \|/);
    expect(md).toMatch(/\| Migration of a dirty 50k-row table: the legacy writer's longest wait grows by ≤ 250 ms \| \d+ ms before, \d+ ms during/);
    const scaleSvg = readFileSync(path.join(out, "benchmarks-scale.svg"), "utf8");
    expect(scaleSvg).toContain("50 groups per user");

    // Rendering again from the JSON alone, without measuring, gives the same files.
    copyFileSync(path.join(out, "benchmarks.json"), path.join(rendered, "benchmarks.json"));
    const render = await runNode(path.join(packageRoot, "scripts", "bench", "bench-render.ts"), ["--out", rendered], {});
    expect(render.code, render.output).toBe(0);
    expect(readFileSync(path.join(rendered, "benchmarks.md"), "utf8")).toBe(md);
    expect(readFileSync(path.join(rendered, "benchmarks.svg"), "utf8")).toBe(svg);
    expect(readFileSync(path.join(rendered, "benchmarks-network.svg"), "utf8")).toBe(networkSvg);
    expect(readFileSync(path.join(rendered, "benchmarks-scale.svg"), "utf8")).toBe(scaleSvg);
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(rendered, { recursive: true, force: true });
  }
}, 420_000);

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

test("Ctrl-C while pgbench runs, on DATABASE_URL's server: exit 130, every database it made dropped and named, its folder gone, no stack", async () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "rolesync-bench-interrupt-"));
  const out = path.join(tmp, "out");
  const databases = (pid: number) => databasesMadeBy("rolesync_bench", pid);
  try {
    let made: string[] = [];
    const run = await interruptWhen(
      path.join(packageRoot, "scripts", "bench", "bench.ts"),
      ["--toy", "--out", out],
      { DATABASE_URL: testServer().adminUrl, TMPDIR: tmp },
      async (pid, output) => /noop-c2 round 1 sync:/.test(output) && (made = await databases(pid)).length > 0,
      120_000,
    );
    expect(run.code, run.output).toBe(130);
    for (const name of made) expect(run.output).toContain(`[bench] interrupted; dropped database ${name} on DATABASE_URL's server\n`);
    expect(run.output).not.toMatch(/\[bench\] failed|Unhandled|node:events|^\s+at /m);
    expect(await databases(run.pid)).toEqual([]);
    // Its work folder (pgbench's scripts and logs) is gone; only tsx's cache may stay.
    expect(readdirSync(tmp).filter((f) => f !== "out" && !f.startsWith("tsx-"))).toEqual([]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}, 180_000);
