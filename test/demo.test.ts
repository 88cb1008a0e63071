/*
 * `npm run demo` as a newcomer runs it (a subprocess), on the test server,
 * at a smaller size so it stays quick: it must tell the whole story and end
 * with a clean report, and leave no database behind, even when interrupted.
 */
import { expect, test } from "vitest";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { databasesMadeBy, interruptWhen, runNode, testServer, withPgClient } from "./helpers.ts";

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
  // Built as Aleph 4.0 is (Alembic at 8adf50aadcb0), the table gets the key a real 4.0 database gets: rolesync's own.
  expect(run.out).toMatch(/An Aleph 4\.0 database \(Alembic at 8adf50aadcb0\)/);
  expect(run.out).toMatch(/^ {3}rolesync_role_membership_key: UNIQUE \(member_id, group_id\)$/m);
  expect(run.out).not.toMatch(/role_membership_pkey:/);
  expect(run.out).toMatch(/logins\s+200 /);
  expect(run.out).toMatch(/errors\s+0\n/);
  expect(run.out).toMatch(/duplicate memberships\s+0\n/);
  expect(run.out).toMatch(/rows they wrote: 0, transaction ids they took: 0/);
  const left = await withPgClient(server.adminUrl, async (c) =>
    (await c.query("select count(*)::int as n from pg_database where datname like 'rolesync_demo%'")).rows[0].n,
  );
  expect(left).toBe(0);
});

test("Ctrl-C during the storm on DATABASE_URL's server: exit 130, its database dropped, one line saying so, no stack", async () => {
  let made: string[] = [];
  const run = await interruptWhen(
    path.join(packageRoot, "scripts", "tools", "demo.ts"),
    [],
    { DATABASE_URL: testServer().adminUrl },
    async (pid, output) => (made = await databasesMadeBy("rolesync_demo", pid)).length > 0 && /5\. A login storm/.test(output),
  );
  expect(run.code, run.output).toBe(130);
  expect(made).toHaveLength(1);
  expect(run.output).toContain(`rolesync demo: interrupted; dropped database ${made[0]} on DATABASE_URL's server\n`);
  expect(run.output).not.toMatch(/demo failed|login failed|Unhandled|node:events|^\s+at /m);
  expect(await databasesMadeBy("rolesync_demo", run.pid)).toEqual([]);
});

test("`--pg` outside the supported range, a missing major or an unknown argument: exit 1 with the range, before any server starts", async () => {
  for (const [args, message] of [
    [["--pg", "99"], /^rolesync demo: --pg 99: rolesync supports PostgreSQL 10 to 18; use one of 10, 11, 12, 13, 14, 15, 16, 17, 18/m],
    [["--pg=9"], /^rolesync demo: --pg 9: rolesync supports PostgreSQL 10 to 18/m],
    [["--pg"], /^rolesync demo: --pg needs a PostgreSQL major version \(10 to 18\), e\.g\. `npm run demo -- --pg 15`$/m],
    [["--frob"], /^rolesync demo: unknown argument\(s\) --frob: the demo takes only --pg N$/m],
  ] as const) {
    const { code, output } = await runNode(path.join(packageRoot, "scripts", "tools", "demo.ts"), [...args], { DATABASE_URL: undefined });
    expect(code, output).toBe(1);
    expect(output).toMatch(message);
    expect(output).not.toMatch(/started embedded|Aleph 4\.0 database/);
  }
});
