/*
 * rolesync inside Aleph's real life cycle: every order of `rolesync migrate`
 * and Aleph's own `aleph upgrade` works with no manual Alembic step, and the
 * table ends with exactly one unique index on (member_id, group_id).
 *
 * The fixtures hold Aleph's schema as its Alembic chain leaves it at 3.x
 * (c52a1f469ac7), 4.0 (8adf50aadcb0) and 4.1+ (31e24765dee3); `alephUpgrade`
 * runs Aleph's later revisions as their SQL plus the alembic_version bump,
 * all in one transaction, as flask_migrate.upgrade() does in Aleph's Helm
 * pre-upgrade hook.
 */
import { afterAll, describe, expect, test } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { runMigrations, packageRoot } from "../src/migrate.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { createRoles, groupsOf, installRelease010, runNode, serverMajor, sync, withPgClient, type TestDatabase } from "./helpers.ts";
import { ALEPH_KEY, alephDatabase as makeAlephDatabase, alephUpgrade, HEAD, keys, REVISION_OF, ROLESYNC_KEY, type Release } from "./aleph-fixtures.ts";

const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const db of databases) await db.drop();
});

async function alephDatabase(release: Release, opts: { dirty?: boolean } = {}): Promise<TestDatabase> {
  const db = await makeAlephDatabase(release, opts);
  databases.push(db);
  return db;
}

async function migrate(db: TestDatabase) {
  return runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
}

/** What every end state must give: a clean, keyed table, the check passing, and a working sync. */
async function expectHealthy(db: TestDatabase) {
  await withPgClient(db.url, async (c) => {
    const { rows: checks } = await c.query<{ check_name: string; ok: boolean }>(
      "select check_name, ok from public.role_membership_check()",
    );
    expect(checks.filter((r) => !r.ok)).toEqual([]);
    const { rows: dups } = await c.query("select * from public.role_membership_duplicates");
    expect(dups).toEqual([]);
    const { users, groups } = await createRoles(c, { users: 1, groups: 2 });
    expect(await sync(c, users[0], groups)).toEqual({ added: groups, removed: [] });
    expect(await groupsOf(c, users[0])).toEqual(groups);
    expect(await sync(c, users[0], groups)).toEqual({ added: [], removed: [] });
  });
}

async function alembicVersion(c: pg.Client): Promise<string> {
  return (await c.query<{ v: string }>("select version_num as v from public.alembic_version")).rows[0].v;
}

describe.each(["3.x", "4.0"] as const)("Aleph %s with duplicates and NULL rows", (release) => {
  test("rolesync first: its own unique key, the primary key's name left to Aleph; Aleph's upgrade then passes; rolesync again drops its key", async () => {
    const db = await alephDatabase(release, { dirty: true });

    await migrate(db);
    // 12+: NOT NULL columns (000007 set them without a scan). 10 and 11: a validated check instead,
    // since SET NOT NULL would scan the table under ACCESS EXCLUSIVE there.
    const notNull = (await withPgClient(db.url, serverMajor)) >= 12;
    await withPgClient(db.url, async (c) => {
      expect(await keys(c)).toEqual({ unique: [ROLESYNC_KEY], primaryKey: null, notNull });
      const { rows } = await c.query("select reason, count(*)::int as n from rolesync.role_membership_removed group by 1 order by 1");
      expect(rows).toEqual([
        { reason: "duplicate", n: 4 },
        { reason: "null_column", n: 2 },
      ]);
    });
    await expectHealthy(db);

    // Aleph's next upgrade, as its Helm chart's pre-upgrade hook runs it: every pending revision, 131674bde902 included.
    const ran = await withPgClient(db.url, alephUpgrade);
    expect(ran).toContain("131674bde902");
    await withPgClient(db.url, async (c) => {
      expect(await alembicVersion(c)).toBe(HEAD);
      expect((await keys(c)).unique).toEqual([ALEPH_KEY, ROLESYNC_KEY]);
      const { rows } = await c.query<{ ok: boolean; hint: string }>(
        "select ok, hint from public.role_membership_check() where check_name = 'redundant_key'",
      );
      expect(rows[0]).toMatchObject({ ok: false, hint: expect.stringMatching(/rolesync migrate/) });
      // And Aleph's 4.0 column is there (a stamp would have skipped it).
      const { rows: col } = await c.query("select to_regclass('public.role') is not null and exists (select from pg_attribute where attrelid = 'public.role'::regclass and attname = 'last_login_at') as ok");
      expect(col[0].ok).toBe(true);
    });

    // rolesync run again, as an operator runs it: no migration pending, its hook drops the redundant key, and it says so.
    const cli = await runNode(path.join(packageRoot, "dist", "bin.js"), ["migrate"], { DATABASE_URL: db.url, ROLESYNC_APP_ROLE: APP_ROLE });
    expect(cli.code, cli.output).toBe(0);
    expect(cli.stdout).toContain(
      "→ drop-redundant-key.sql (hook): dropping rolesync_role_membership_key: role_membership_pkey now keys role_membership\n",
    );
    // On 10 and 11 the same hook also drops rolesync's check: Aleph's primary key made the columns NOT NULL.
    const notNullLine = "→ drop-redundant-key.sql (hook): dropping role_membership_not_null: group_id and member_id are NOT NULL\n";
    if (notNull) expect(cli.stdout).not.toContain(notNullLine);
    else expect(cli.stdout).toContain(notNullLine);
    const changes = notNull ? 1 : 2;
    expect(cli.stdout).toMatch(new RegExp(`\\nno migration pending; the hooks made ${changes} change\\(s\\), listed above \\(\\d+\\.\\d s\\)\\n$`));
    expect(cli.stdout).not.toMatch(/already up to date/);
    // And through the API: the same action in the result; a run after it did nothing.
    const again = await migrate(db);
    expect(again.executed).toEqual([]);
    expect(again.hooks).toEqual([]);
    await withPgClient(db.url, async (c) => {
      expect(await keys(c)).toEqual({ unique: [ALEPH_KEY], primaryKey: "role_membership_pkey", notNull: true });
    });
    await expectHealthy(db);
  });

  test("Aleph's upgrade first (on a clean table), then rolesync: Aleph's key is kept and rolesync adds none", async () => {
    const db = await alephDatabase(release);
    await withPgClient(db.url, alephUpgrade);
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect(await keys(c)).toEqual({ unique: [ALEPH_KEY], primaryKey: "role_membership_pkey", notNull: true });
    });
    await expectHealthy(db);
  });

  test("the duplicates are why Aleph's own upgrade fails without rolesync", async () => {
    const db = await alephDatabase(release, { dirty: true });
    const err = await withPgClient(db.url, alephUpgrade).catch((e) => e);
    expect(err.code).toMatch(/^(23505|23502)$/); // the duplicates (or the NULL rows) stop Aleph's key
    await withPgClient(db.url, async (c) => expect(await alembicVersion(c)).toBe(REVISION_OF[release]));
  });
});

describe("Aleph 4.1+", () => {
  test("rolesync on a database Aleph already keyed: Aleph's key is recognised, not doubled; the upgrade and a re-run change nothing", async () => {
    const db = await alephDatabase("4.1+");
    const oid = async () =>
      withPgClient(db.url, async (c) => (await c.query("select 'public.role_membership_pkey'::regclass::oid as o")).rows[0].o);
    const before = await oid();
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect(await keys(c)).toEqual({ unique: [ALEPH_KEY], primaryKey: "role_membership_pkey", notNull: true });
    });
    expect(await withPgClient(db.url, alephUpgrade)).toEqual([]);
    expect((await migrate(db)).executed).toEqual([]);
    expect(await oid()).toBe(before);
    await expectHealthy(db);
  });
});

describe("an upgrade from rolesync 0.1.0", () => {
  test("0.1.0 took the primary key's name on a 4.0 database, and Aleph's upgrade failed; 0.2.0 hands it back and the upgrade passes", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    if ((await withPgClient(db.url, serverMajor)) < 12) {
      // 0.1.0 never ran on PostgreSQL 10 or 11: its first migration does not even parse there,
      // so there is no 0.1.0 database to upgrade (0.2.0 installs through migrations/compat/pg10-11).
      const first = readFileSync(path.join(packageRoot, "migrations", "committed", "000001-schema.sql"), "utf8");
      const err = await withPgClient(db.url, (c) =>
        c.query(`begin; ${first.replace(/:ROLESYNC_APP_ROLE/g, "current_user")}; commit`),
      ).catch((e) => e);
      expect(err.code).toMatch(/^(42601|42704)$/); // MATERIALIZED (12+), plan_cache_mode (12+)
      return;
    }
    // 0.1.0's migrations, by 0.1.0's runner: graphile-migrate's own migrate.
    const old = await installRelease010(db.url, APP_ROLE);
    expect(old.at(-1)).toBe("000008-sync-by-foreign-id.sql");
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).primaryKey).toBe("role_membership_pkey");
      const err = await alephUpgrade(c).catch((e) => e);
      expect(err.message).toMatch(/multiple primary keys for table "role_membership" are not allowed/);
      // The archive 0.1.0 wrote, in public then.
      const { rows } = await c.query("select count(*)::int as n from public.role_membership_removed");
      expect(rows[0].n).toBe(6);
    });

    const upgraded = await migrate(db);
    expect(upgraded.executed[0]).toBe("000009-sync-oauth-login.sql");
    await withPgClient(db.url, async (c) => {
      expect(await keys(c)).toEqual({ unique: [ROLESYNC_KEY], primaryKey: null, notNull: true });
      // The archive moved with its rows.
      const { rows } = await c.query(
        "select to_regclass('public.role_membership_removed') as public, (select count(*)::int from rolesync.role_membership_removed) as n",
      );
      expect(rows[0]).toEqual({ public: null, n: 6 });
      expect(await alephUpgrade(c)).toContain("131674bde902");
    });
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect(await keys(c)).toEqual({ unique: [ALEPH_KEY], primaryKey: "role_membership_pkey", notNull: true });
    });
    await expectHealthy(db);
  });
});
