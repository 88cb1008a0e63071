/*
 * `rolesync check` tells the truth about rolesync itself, not only about the
 * table's data: each damage an operator (or Alembic's autogenerate) can do
 * to a fully migrated Aleph 4.1 database is a failing row with a hint and
 * exit 1, in text and --json; a database that is fine still says all good.
 * Each damage is tested alone, on a database of its own. The same checks in
 * SQL (role_membership_check(), for psql-only operators) are in
 * test/sql/own_state.sql.
 */
import { afterAll, describe, expect, test } from "vitest";
import path from "node:path";
import type pg from "pg";
import { packageRoot, runMigrations } from "../src/migrate.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { alephDatabase } from "./aleph-fixtures.ts";
import { runNode, withPgClient, type TestDatabase } from "./helpers.ts";

const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const db of databases) await db.drop();
});

/** A fully migrated Aleph 4.1 database. */
async function migrated(): Promise<TestDatabase> {
  const db = await alephDatabase("4.1+");
  databases.push(db);
  await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
  return db;
}

async function check(db: TestDatabase) {
  const env = { DATABASE_URL: db.url };
  const bin = path.join(packageRoot, "dist", "bin.js");
  const text = await runNode(bin, ["check"], env);
  const json = await runNode(bin, ["check", "--json"], env);
  return { text, code: text.code, out: JSON.parse(json.stdout.trim().split("\n").pop()!) as CheckJson, jsonCode: json.code };
}

interface CheckJson {
  ok: boolean;
  checks: { check_name: string; ok: boolean; count: number | null; detail: string; hint: string | null }[];
}

/** The one failing row, and that it fails as the CLI shows it: FAIL, the detail, the hint, exit 1 in both forms. */
async function expectOneFailure(db: TestDatabase, name: string, detail: RegExp, hint: RegExp) {
  const { text, code, out, jsonCode } = await check(db);
  expect(code, text.stdout + text.stderr).toBe(1);
  expect(jsonCode).toBe(1);
  expect(out.ok).toBe(false);
  const failing = out.checks.filter((c) => !c.ok);
  expect(failing.map((c) => c.check_name)).toEqual([name]);
  expect(failing[0].detail).toMatch(detail);
  expect(failing[0].hint).toMatch(hint);
  expect(text.stdout).toMatch(new RegExp(`^FAIL  ${name} `, "m"));
  expect(text.stdout).toMatch(/^ +hint: /m);
  expect(text.stdout).toMatch(/rolesync check: problems found \(exit 1\)/);
}

const damage = (db: TestDatabase, sql: string) => withPgClient(db.url, (c: pg.Client) => c.query(sql));

describe("a database that is fine", () => {
  test("says all good, exit 0, every row ok", async () => {
    const db = await migrated();
    const { text, code, out } = await check(db);
    expect(code, text.stdout).toBe(0);
    expect(text.stdout).toMatch(/rolesync check: all good/);
    expect(out.checks.every((c) => c.ok)).toBe(true);
    expect(out.checks.find((c) => c.check_name === "migrations")?.detail).toMatch(/^18 of 18 migrations applied$/);
  });
});

describe("each damage, alone, fails check with a hint", () => {
  test("not installed (before `rolesync migrate`)", async () => {
    const db = await alephDatabase("4.1+");
    databases.push(db);
    const { code, out } = await check(db);
    expect(code).toBe(1);
    expect(out.checks[0]).toMatchObject({ check_name: "installed", ok: false, hint: expect.stringMatching(/rolesync status/) });
  });

  test("the newest migration missing from rolesync.migrations (an interrupted or older install)", async () => {
    const db = await migrated();
    await damage(db, "delete from rolesync.migrations where filename = '000018.sql'");
    await expectOneFailure(db, "migrations", /17 of 18 migrations applied; pending: 000018-validate-not-null-check\.sql/, /rolesync migrate/);
  });

  test("a ledger this package does not know: a newer rolesync's", async () => {
    const db = await migrated();
    await damage(db, "insert into rolesync.migrations (filename, hash, previous_hash) select '000099.sql', 'sha1:newer', hash from rolesync.migrations where filename = '000018.sql'");
    await expectOneFailure(db, "migrations", /goes on to 000099\.sql: a newer rolesync migrated this database/, /version that migrated it/);
  });

  test("a ledger this package does not know: an edited row", async () => {
    const db = await migrated();
    await damage(db, "update rolesync.migrations set hash = 'sha1:edited' where filename = '000018.sql'");
    await expectOneFailure(db, "migrations", /holds 000018\.sql with another hash/, /ledger was edited/);
  });

  test("the guard trigger dropped", async () => {
    const db = await migrated();
    await damage(db, "drop trigger role_membership_guard on public.role_membership");
    await expectOneFailure(db, "guard_trigger", /role_membership_guard is missing/, /rolesync uninstall`, then `rolesync migrate/);
  });

  test("the guard trigger disabled", async () => {
    const db = await migrated();
    await damage(db, "alter table public.role_membership disable trigger role_membership_guard");
    await expectOneFailure(db, "guard_trigger", /role_membership_guard is disabled/, /ENABLE TRIGGER role_membership_guard/);
  });

  test.each([
    "public.sync_role_memberships(integer, integer[], text)",
    "public.sync_role_memberships_by_foreign_id(text, text[], text)",
    "public.sync_oauth_login(text, text, text, text[], text)",
    "public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text)",
  ])("a function Aleph calls dropped by hand: %s", async (fn) => {
    const db = await migrated();
    await damage(db, `drop function ${fn}`);
    await expectOneFailure(db, "functions", new RegExp(`missing: ${fn.replace(/[()[\]]/g, "\\$&")}`), /rolesync uninstall/);
  });

  test("a function replaced by hand: its definition differs from its migration's", async () => {
    const db = await migrated();
    // The body of sync_role_memberships_by_foreign_id, with one character changed: the kind of edit a hot patch makes.
    await withPgClient(db.url, async (c) => {
      const { rows } = await c.query<{ def: string }>(
        "select pg_get_functiondef('public.sync_role_memberships_by_foreign_id(text, text[], text)'::regprocedure) as def",
      );
      await c.query(rows[0].def.replace("must not be empty", "must not be blank"));
    });
    await expectOneFailure(db, "functions", /changed since its migration: public\.sync_role_memberships_by_foreign_id/, /rolesync migrate/);
  });

  test("the application role without EXECUTE on a function it calls", async () => {
    const db = await migrated();
    await damage(db, `revoke execute on function public.sync_oauth_login(text, text, text, text[], text) from ${APP_ROLE}`);
    await expectOneFailure(
      db,
      "app_role_privileges",
      new RegExp(`${APP_ROLE} lacks EXECUTE on public\\.sync_oauth_login`),
      new RegExp(`GRANT EXECUTE ON FUNCTION public\\.sync_oauth_login\\(text, text, text, text\\[\\], text\\) TO ${APP_ROLE};`),
    );
  });

  test("the group index dropped (Alembic's autogenerate proposes it on Aleph 4.1+)", async () => {
    const db = await migrated();
    await damage(db, "drop index public.role_membership_group_id_member_id_idx");
    await expectOneFailure(db, "group_index", /role_membership_group_id_member_id_idx is missing/, /CREATE INDEX CONCURRENTLY/);
  });

  test("NULL rows once the columns allow NULL (OpenAleph's alembic check proposes DROP NOT NULL)", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    databases.push(db);
    await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
    // Keyed by rolesync's unique constraint; the columns made nullable, as OpenAleph's models declare them.
    await damage(
      db,
      `alter table public.role_membership alter column group_id drop not null, alter column member_id drop not null;
       alter table public.role_membership drop constraint if exists role_membership_not_null;
       insert into public.role_membership (group_id, member_id) select null, min(id) from public.role`,
    );
    await expectOneFailure(db, "null_rows", /^1 row\(s\) with a NULL group_id or member_id$/, /rolesync dedupe/);
  });
});
