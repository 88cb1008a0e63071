/*
 * Aleph issue #3811, reproduced on a real server: two concurrent OAuth
 * callbacks through the legacy delete-then-insert path leave a duplicate, and
 * from then on SQLAlchemy's per-row delete matches two rows (StaleDataError,
 * a 500 on every login). After the migrations, neither can happen.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type pg from "pg";
import { runMigrations } from "../src/migrate.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { alephPre41 } from "../scripts/server/fixtures.ts";
import {
  backendPid,
  connect,
  createTestDatabase,
  duplicatePairs,
  groupsOf,
  waitUntilBlocked,
  type TestDatabase,
} from "./helpers.ts";

let db: TestDatabase;
let a: pg.Client;
let b: pg.Client;
let observer: pg.Client;
let bPid: number;
let user: number;
let group: number;

beforeAll(async () => {
  db = await createTestDatabase({ empty: true });
  a = await connect(db.url);
  b = await connect(db.url);
  observer = await connect(db.url);
  bPid = await backendPid(b);
  await alephPre41(a);
  ({ rows: [{ id: user }] } = await a.query(
    `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
     values ('oidc:new-user', 'New User', 'user', false, false, false, false) returning id`,
  ));
  ({ rows: [{ id: group }] } = await a.query("select min(id) as id from public.role where type = 'group'"));
});

afterAll(async () => {
  await a?.end();
  await b?.end();
  await observer?.end();
  await db?.drop();
});

/** Aleph's handle_oauth before the fix: clear_roles() then add_role(), in one transaction. */
async function legacyLoginStart(c: pg.Client) {
  await c.query("begin");
  await c.query("delete from public.role_membership where member_id = $1", [user]);
  await c.query("insert into public.role_membership (group_id, member_id) values ($1, $2)", [group, user]);
}

/** SQLAlchemy's secondary-table delete: one statement per association row, expecting rowcount 1. */
async function ormDeleteRowcount(c: pg.Client): Promise<number> {
  await c.query("begin");
  const { rowCount } = await c.query(
    "delete from public.role_membership where group_id = $1 and member_id = $2",
    [group, user],
  );
  await c.query("rollback");
  return rowCount ?? 0;
}

describe("before the migrations (Aleph < 4.1)", () => {
  test("two concurrent first logins leave the same membership twice", async () => {
    await legacyLoginStart(a); // callback 1: cleared (nothing yet) and inserted, not committed
    await legacyLoginStart(b); // callback 2: its delete sees nothing committed, so it inserts too
    await a.query("commit");
    await b.query("commit");
    expect(await groupsOf(a, user)).toEqual([group, group]);
    const { rows } = await a.query(
      "select count(*)::int as copies from public.role_membership where group_id = $1 and member_id = $2",
      [group, user],
    );
    expect(rows).toEqual([{ copies: 2 }]);
  });

  test("from then on the per-row delete expects 1 row and matches 2: StaleDataError, HTTP 500", async () => {
    expect(await ormDeleteRowcount(a)).toBe(2);
  });
});

describe("after `npm run migrate`", () => {
  beforeAll(async () => {
    await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
  });

  test("the duplicate is gone, archived, and the per-row delete matches exactly one row", async () => {
    expect(await groupsOf(a, user)).toEqual([group]);
    const { rows } = await a.query(
      "select group_id, member_id, reason from rolesync.role_membership_removed where member_id = $1",
      [user],
    );
    expect(rows).toEqual([{ group_id: group, member_id: user, reason: "duplicate" }]);
    expect(await ormDeleteRowcount(a)).toBe(1);
  });

  test("even Aleph's unpatched delete-then-insert race neither duplicates nor fails: the second login waits, then skips the repeat", async () => {
    await a.query("delete from public.role_membership where member_id = $1", [user]);
    await legacyLoginStart(a);
    const second = legacyLoginStart(b).then(
      () => null,
      (e: { code?: string }) => e.code,
    );
    // The second callback's insert waits on the member lock the guard trigger took for the first...
    expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:advisory");
    await a.query("commit");
    // ...then finds the pair stored and skips it. Aleph 4.1's bare key raised 23505 here.
    expect(await second).toBeNull();
    await b.query("commit");
    expect(await groupsOf(a, user)).toEqual([group]);
    expect(await duplicatePairs(a)).toBe(0);
  });

  test("the same two concurrent logins through sync_role_memberships both succeed, with one row", async () => {
    await a.query("delete from public.role_membership where member_id = $1", [user]);
    await a.query("begin");
    await b.query("begin");
    const first = await a.query("select * from public.sync_role_memberships($1, $2)", [user, [group]]);
    const second = b.query("select * from public.sync_role_memberships($1, $2)", [user, [group]]);
    expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:advisory");
    await a.query("commit");
    const secondResult = await second;
    await b.query("commit");
    expect(first.rows[0]).toEqual({ added: [group], removed: [] });
    expect(secondResult.rows[0]).toEqual({ added: [], removed: [] }); // saw the first's commit: nothing to do
    expect(await groupsOf(a, user)).toEqual([group]);
    expect(await ormDeleteRowcount(a)).toBe(1);
  });
});
