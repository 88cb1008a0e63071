/*
 * `npm run demo` as a newcomer runs it (a subprocess), on the test server,
 * at a smaller size so it stays quick: it must tell the whole story and end
 * with a clean report, and leave no database behind.
 */
import { expect, test } from "vitest";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { runNode, testServer, withPgClient } from "./helpers.ts";

test("the demo reproduces the bug, migrates, survives the storm, and cleans up", async () => {
  const server = testServer();
  const { code, output } = await runNode(path.join(packageRoot, "scripts", "tools", "demo.ts"), [], {
    DATABASE_URL: server.adminUrl,
    DEMO_LOGINS: "200",
  });
  const run = { code, out: output };
  expect(run.code, run.out).toBe(0);
  expect(run.out).toMatch(/group \d+, member \d+: 2 copies/);
  expect(run.out).toMatch(/StaleDataError: DELETE statement on table 'role_membership' expected to delete 1 row\(s\); Only 2 were matched\./);
  expect(run.out).toMatch(/duplicate: group \d+, member \d+/);
  expect(run.out).toMatch(/now matches 1 row/);
  expect(run.out).toMatch(/logins\s+200 /);
  expect(run.out).toMatch(/errors\s+0\n/);
  expect(run.out).toMatch(/duplicate memberships\s+0\n/);
  expect(run.out).toMatch(/rows they wrote: 0, transaction ids they took: 0/);
  const left = await withPgClient(server.adminUrl, async (c) =>
    (await c.query("select count(*)::int as n from pg_database where datname like 'rolesync_demo%'")).rows[0].n,
  );
  expect(left).toBe(0);
});
