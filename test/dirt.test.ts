/*
 * One home for the dirt counts: rolesync.role_membership_dirt()'s body
 * (migration 000015) is src/dirt.ts's DIRT_SQL, which the CLI runs as a
 * plain query before rolesync is installed; and both give the same answer.
 */
import { afterAll, expect, test } from "vitest";
import { DIRT_SQL, membershipDirt } from "../src/dirt.ts";
import { runMigrations } from "../src/migrate.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { alephPre41Dirty, DIRTY_ROWS } from "../scripts/server/fixtures.ts";
import type pg from "pg";
import { createTestDatabase, withPgClient, type TestDatabase } from "./helpers.ts";

const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const db of databases) await db.drop();
});

test("the installed function's body is src/dirt.ts's query, character for character", async () => {
  const db = await createTestDatabase();
  databases.push(db);
  const { rows } = await withPgClient(db.url, (c) =>
    c.query("select prosrc from pg_proc where oid = 'rolesync.role_membership_dirt(integer)'::regprocedure"),
  );
  expect(rows[0].prosrc).toBe(DIRT_SQL);
});

test("the query before rolesync is installed and the function afterwards count the same dirty rows alike", async () => {
  const db = await createTestDatabase({ empty: true });
  databases.push(db);
  await withPgClient(db.url, alephPre41Dirty);
  const rows = (c: pg.Client) =>
    c.query("select group_id, member_id from public.role_membership").then((r) => r.rows as { group_id: number | null; member_id: number | null }[]);
  const dirty = await withPgClient(db.url, rows);
  const before = await withPgClient(db.url, async (c) => {
    expect((await c.query("select to_regnamespace('rolesync') as s")).rows[0].s).toBeNull(); // the query, not the function
    return membershipDirt(c, 10);
  });
  const { duplicates, triplicates, nullRows } = DIRTY_ROWS;
  expect(before).toMatchObject({ duplicatedPairs: duplicates + triplicates, surplusCopies: duplicates + 2 * triplicates, nullRows });
  expect(before.worst.slice(0, triplicates).every((w) => w.copies === 3)).toBe(true);

  // Migrated (and so deduped), then the same dirty rows put back in a transaction
  // without the key and the guard: the function must see what the query saw.
  await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
  const after = await withPgClient(db.url, async (c) => {
    expect(await membershipDirt(c, 10)).toEqual({ duplicatedPairs: 0, surplusCopies: 0, nullRows: 0, worst: [] });
    await c.query("begin");
    try {
      await c.query("alter table public.role_membership disable trigger role_membership_guard");
      const { rows: keys } = await c.query<{ conname: string }>(
        "select conname from pg_constraint where conrelid = 'public.role_membership'::regclass and contype in ('p', 'u')",
      );
      for (const k of keys) await c.query(`alter table public.role_membership drop constraint ${k.conname}`);
      await c.query("alter table public.role_membership alter column group_id drop not null, alter column member_id drop not null");
      await c.query("alter table public.role_membership drop constraint if exists role_membership_not_null");
      await c.query("delete from public.role_membership");
      for (const r of dirty) await c.query("insert into public.role_membership (group_id, member_id) values ($1, $2)", [r.group_id, r.member_id]);
      expect((await c.query("select to_regprocedure('rolesync.role_membership_dirt(integer)') is not null as f")).rows[0].f).toBe(true);
      return await membershipDirt(c, 10);
    } finally {
      await c.query("rollback");
    }
  });
  expect(after).toEqual(before);
});
