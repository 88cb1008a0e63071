/*
 * The upgrade path: migrations released in 0.1.0 (000001-000008) are
 * immutable, and every change since is a new migration, so a database 0.1.0
 * migrated must end where a fresh install ends. This builds both from the
 * same dirty Aleph table, the first with 0.1.0's migrations by 0.1.0's
 * runner (graphile-migrate's migrate) and data written through 0.1.0's
 * functions, then migrates it to head; the two schemas (scripts/tools/schema.ts)
 * and ledgers must be the same, and none of 0.1.0's data may be lost.
 */
import { afterAll, expect, test } from "vitest";
import type pg from "pg";
import { runMigrations } from "../src/migrate.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { alephPre41Dirty } from "../scripts/server/fixtures.ts";
import { describeSchema } from "../scripts/tools/schema.ts";
import { createRoles, createTestDatabase, installRelease010, withPgClient, type TestDatabase } from "./helpers.ts";

const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const db of databases) await db.drop();
});

async function dirtyAleph(): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  databases.push(db);
  await withPgClient(db.url, alephPre41Dirty);
  return db;
}

/** Everything rolesync and its users wrote: memberships, roles, the archive, the version table, the ledger. */
async function data(c: pg.Client, schema: "public" | "rolesync") {
  const q = async (sql: string) => (await c.query(sql)).rows;
  return {
    memberships: await q("select group_id, member_id from public.role_membership order by group_id, member_id"),
    roles: await q("select id, foreign_id, name, type, deleted_at from public.role order by id"),
    archive: await q(`select * from ${schema}.role_membership_removed order by id`),
    versions: await q(`select * from ${schema}.role_membership_version order by member_id`),
  };
}

test("0.1.0's migrations, its data, then head: the same schema and ledger as a fresh install, and nothing lost", async () => {
  const upgraded = await dirtyAleph();
  expect((await installRelease010(upgraded.url, APP_ROLE)).at(-1)).toBe("000008-sync-by-foreign-id.sql");
  // Data written through 0.1.0's own functions: syncs by id and by foreign id, which
  // create groups on the fly, bump the version table, and (with the dedupe 0.1.0 ran) fill the archive.
  const before = await withPgClient(upgraded.url, async (c) => {
    const { users, groups } = await createRoles(c, { users: 3, groups: 4 });
    await c.query("select * from public.sync_role_memberships($1, $2)", [users[0], groups]);
    await c.query("select * from public.sync_role_memberships($1, $2)", [users[1], groups.slice(0, 2)]);
    await c.query("select * from public.sync_role_memberships($1, $2)", [users[1], groups.slice(1, 3)]);
    const { rows } = await c.query<{ foreign_id: string }>("select foreign_id from public.role where id = $1", [users[2]]);
    await c.query("select * from public.sync_role_memberships_by_foreign_id($1, $2)", [
      rows[0].foreign_id,
      ["group:upgrade-a", "group:upgrade-b"],
    ]);
    return data(c, "public");
  });
  expect(before.archive.length).toBeGreaterThan(0);
  expect(before.versions.length).toBe(3);

  const result = await runMigrations({ databaseUrl: upgraded.url, appRole: APP_ROLE });
  expect(result.executed[0]).toBe("000009-sync-oauth-login.sql");

  const fresh = await dirtyAleph();
  await runMigrations({ databaseUrl: fresh.url, appRole: APP_ROLE });

  const [a, b] = await Promise.all([
    withPgClient(upgraded.url, describeSchema),
    withPgClient(fresh.url, describeSchema),
  ]);
  expect(a.length).toBeGreaterThan(1000);
  expect(a).toBe(b);

  const ledger = (c: pg.Client) =>
    c.query("select filename, hash, previous_hash from rolesync.migrations order by filename").then((r) => r.rows);
  expect(await withPgClient(upgraded.url, ledger)).toEqual(await withPgClient(fresh.url, ledger));

  // Nothing lost: the same rows, ids and times, now in schema rolesync.
  expect(await withPgClient(upgraded.url, (c) => data(c, "rolesync"))).toEqual(before);
});
