/*
 * scripts/bench/writer-wait.ts, which docs/aleph.md and docs/scaling.md
 * quote, at toy size so that it cannot rot: both writers run, PGOPTIONS
 * reaches the migration's session, and bad arguments stop it before any
 * server starts.
 */
import { expect, test } from "vitest";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { runNode, serverMajor, testServer, withPgClient } from "./helpers.ts";

const script = path.join(packageRoot, "scripts", "bench", "writer-wait.ts");

test("the legacy login beside the migration, with PGOPTIONS' max_parallel_maintenance_workers = 0; then the insert writer; no database left", async () => {
  const server = testServer();
  // PostgreSQL 10 has no parallel index builds, and no such setting.
  const parallel = (await withPgClient(server.adminUrl, serverMajor)) >= 11;
  const legacy = await runNode(script, ["--rows", "2000", "--login", "legacy"], {
    DATABASE_URL: server.adminUrl,
    PGOPTIONS: parallel ? "-c max_parallel_maintenance_workers=0" : undefined,
  });
  expect(legacy.code, legacy.output).toBe(0);
  expect(legacy.stdout).toMatch(parallel ? /, max_parallel_maintenance_workers 0: / : /, max_parallel_maintenance_workers none: /);
  expect(legacy.stdout).toMatch(
    /^\[writer-wait\] PostgreSQL \d+, 2,000 rows, legacy writer, max_parallel_maintenance_workers (0|none): migration \d+\.\d s \(\d+ migrations\); the writer's longest wait: before \d+ ms \([1-9]\d* writes\), during \d+ ms \([1-9]\d* writes\), added -?\d+ ms$/m,
  );
  const insert = await runNode(script, ["--rows", "2000"], { DATABASE_URL: server.adminUrl, PGOPTIONS: undefined });
  expect(insert.code, insert.output).toBe(0);
  expect(insert.stdout).toMatch(/, 2,000 rows, insert writer, max_parallel_maintenance_workers (\d+|none): migration /);
  const left = await withPgClient(server.adminUrl, async (c) =>
    (await c.query("select count(*)::int as n from pg_database where datname like 'rolesync_writer_wait%'")).rows[0].n,
  );
  expect(left).toBe(0);
});

test("an unknown argument, a bad --rows or --login: one line, exit 2, before any server starts", async () => {
  for (const [args, message] of [
    [["--frob"], "[writer-wait] unknown argument --frob; usage: writer-wait.ts [--rows N] [--login insert|legacy]"],
    [["--rows", "4"], '[writer-wait] --rows must be a whole number of at least 5, not "4"; usage: writer-wait.ts [--rows N] [--login insert|legacy]'],
    [["--rows"], '[writer-wait] --rows must be a whole number of at least 5, not ""; usage: writer-wait.ts [--rows N] [--login insert|legacy]'],
    [["--login", "scan"], /^\[writer-wait\] --login is insert \(one row per transaction\) or legacy \(.*\), not "scan"$/],
  ] as const) {
    const run = await runNode(script, [...args], { DATABASE_URL: undefined });
    expect(run.code, run.output).toBe(2);
    if (typeof message === "string") expect(run.stderr.trim()).toBe(message);
    else expect(run.stderr.trim()).toMatch(message);
    expect(run.stdout).toBe("");
  }
});
