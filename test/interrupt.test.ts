/*
 * Ctrl-C in the middle of `npm test`, as a terminal sends it: SIGINT to the
 * whole process group (the runner, vitest and its workers, a test's own
 * subprocess), while the bench test's subprocess is running. The run must
 * say it was interrupted (not "FAIL: vitest failed (exit 130)"), exit 130,
 * and leave nothing of ours in the temp folder.
 *
 * It runs from a copy of this checkout, because the runner rebuilds dist/,
 * which the other test files are using.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { spawn } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { testServer } from "./helpers.ts";

let work: string;
let checkout: string;

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), "rolesync-interrupt-"));
  chmodSync(work, 0o755);
  checkout = path.join(work, "checkout");
  cpSync(packageRoot, checkout, {
    recursive: true,
    filter: (src) => {
      const rel = path.relative(packageRoot, src);
      return !["node_modules", "dist", ".git", "tmp", "python"].includes(rel.split(path.sep)[0]) && !rel.endsWith(".log");
    },
  });
  symlinkSync(path.join(packageRoot, "node_modules"), path.join(checkout, "node_modules"), "dir");
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** What a run may leave in its temp folder that is not ours: tsx's cache. */
const ours = (dir: string) => readdirSync(dir).filter((f) => !/^tsx-/.test(f));

test("SIGINT to the whole run while a test's subprocess works: \"interrupted\", exit 130, no FAIL, nothing left in the temp folder", async () => {
  const tmp = path.join(work, "tmp");
  mkdirSync(tmp, { mode: 0o755 });
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|VITEST|ROLESYNC_TEST_)/i.test(k)));
  const child = spawn(process.execPath, ["--import", "tsx", path.join("scripts", "test", "test.ts"), "test/bench.test.ts"], {
    cwd: checkout,
    detached: true, // its own process group, as a terminal's foreground job
    env: { ...env, TMPDIR: tmp, DATABASE_URL: testServer().adminUrl, NO_COLOR: "1" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => child.on("close", (code, signal) => resolve(code ?? (signal ? -1 : null))));

  // Wait until the bench test's subprocess has made its folder (inside the run's folder), then press Ctrl-C.
  const benchRunning = () =>
    readdirSync(tmp, { recursive: true, withFileTypes: true }).some((e) => e.isDirectory() && /^rolesync-bench-[^t]/.test(e.name));
  const deadline = Date.now() + 240_000;
  while (!benchRunning()) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the bench test never started\n${stdout}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
  process.kill(-child.pid!, "SIGINT");
  const code = await closed;

  const output = `--- stdout\n${stdout}\n--- stderr\n${stderr}`;
  expect(code, output).toBe(130);
  expect(stderr, output).toMatch(/^\[rolesync test\] interrupted \(SIGINT\): stopping the servers and removing the run's folders$/m);
  expect(stderr, output).not.toMatch(/FAIL/);
  expect(stdout, output).not.toMatch(/^tests: \d+ passed, \d+ failed/m);
  expect(ours(tmp), output).toEqual([]);
}, 300_000);
