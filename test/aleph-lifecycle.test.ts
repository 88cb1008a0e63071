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
import { APP_ROLE } from "../scripts/harness.ts";
import { createRoles, createTestDatabase, groupsOf, installRelease010, serverMajor, sync, withPgClient, type TestDatabase } from "./helpers.ts";

const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const db of databases) await db.drop();
});

/** Aleph's revisions from 3.x on, in order: what each does to role and role_membership. */
const REVISIONS: [string, string][] = [
  ["c52a1f469ac7", ""],
  ["8adf50aadcb0", "alter table public.role add column last_login_at timestamp without time zone"],
  [
    "131674bde902",
    "alter table public.role_membership add constraint role_membership_pkey primary key (member_id, group_id)",
  ],
  [
    "d46fc882ec6b",
    `alter table public.role add column api_key_expires_at timestamp without time zone;
     alter table public.role add column api_key_expiration_notification_sent integer;
     create index ix_role_api_key_expires_at on public.role (api_key_expires_at)`,
  ],
  [
    "31e24765dee3",
    `alter table public.role add column api_key_digest varchar;
     create unique index ix_role_api_key_digest on public.role (api_key_digest)`,
  ],
];
const HEAD = REVISIONS[REVISIONS.length - 1][0];

type Release = "3.x" | "4.0" | "4.1+";
const REVISION_OF: Record<Release, string> = { "3.x": "c52a1f469ac7", "4.0": "8adf50aadcb0", "4.1+": HEAD };

/** Aleph's role and role_membership at 3.x (Alembic c52a1f469ac7), before its later revisions. */
const ALEPH_3X = `
create type public.role_type as enum ('user', 'group', 'system');
create table public.role (
  id serial primary key,
  created_at timestamp without time zone,
  updated_at timestamp without time zone,
  deleted_at timestamp without time zone,
  foreign_id varchar(2048) not null,
  name varchar not null,
  email varchar,
  api_key varchar,
  is_admin boolean not null,
  is_muted boolean not null,
  type public.role_type not null,
  password_digest varchar,
  reset_token varchar,
  locale varchar,
  is_blocked boolean not null,
  is_tester boolean not null,
  constraint role_foreign_id_key unique (foreign_id)
);
create table public.role_membership (
  group_id integer references public.role (id),
  member_id integer references public.role (id)
);
create table public.alembic_version (
  version_num varchar(32) not null,
  constraint alembic_version_pkc primary key (version_num)
);
insert into public.alembic_version values ('c52a1f469ac7');`;

/** Runs Aleph's pending revisions in one transaction, as `aleph upgrade` does; returns those it ran. */
async function alephUpgrade(c: pg.Client): Promise<string[]> {
  const { rows } = await c.query<{ v: string }>("select version_num as v from public.alembic_version");
  const from = REVISIONS.findIndex(([r]) => r === rows[0].v);
  const pending = REVISIONS.slice(from + 1);
  await c.query("begin");
  try {
    for (const [revision, sql] of pending) {
      await c.query(sql);
      await c.query("update public.alembic_version set version_num = $1", [revision]);
    }
    await c.query("commit");
  } catch (e) {
    await c.query("rollback");
    throw e;
  }
  return pending.map(([r]) => r);
}

/** An Aleph database at `release`, with users in groups; `dirty` adds what the login race leaves. */
async function alephDatabase(release: Release, opts: { dirty?: boolean } = {}): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  databases.push(db);
  await withPgClient(db.url, async (c) => {
    await c.query(ALEPH_3X);
    await c.query(
      `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at)
       select 'oidc:user-' || g, 'User ' || g, 'user'::public.role_type, false, false, false, false, now(), now() from generate_series(1, 20) g
       union all
       select 'group:team-' || g, 'team-' || g, 'group'::public.role_type, false, false, false, false, now(), now() from generate_series(1, 6) g`,
    );
    await c.query(
      `insert into public.role_membership (group_id, member_id)
       select g.id, u.id from public.role u join public.role g on g.type = 'group' and (u.id + g.id) % 3 = 0
        where u.type = 'user'`,
    );
    if (opts.dirty) {
      await c.query(`
        insert into public.role_membership (group_id, member_id)
        select group_id, member_id from (select * from public.role_membership order by member_id, group_id limit 4) d;
        insert into public.role_membership (group_id, member_id)
        values (null, (select min(id) from public.role where type = 'user')), (null, null);`);
    }
    // Bring the schema to the release: Aleph's own revisions, up to and including its revision.
    await c.query("update public.alembic_version set version_num = 'c52a1f469ac7'");
    const target = REVISIONS.findIndex(([r]) => r === REVISION_OF[release]);
    for (const [revision, sql] of REVISIONS.slice(1, target + 1)) {
      if (sql) await c.query(sql);
      await c.query("update public.alembic_version set version_num = $1", [revision]);
    }
  });
  return db;
}

interface Keys {
  /** Unique indexes on exactly (member_id, group_id), with the constraint each backs. */
  unique: { index: string; constraint: string | null; type: string | null }[];
  primaryKey: string | null;
  notNull: boolean;
}

async function keys(c: pg.Client): Promise<Keys> {
  const { rows: unique } = await c.query<{ index: string; constraint: string | null; type: string | null }>(
    `select i.indexrelid::regclass::text as index, con.conname::text as constraint, con.contype::text as type
       from pg_index i
       left join pg_constraint con on con.conindid = i.indexrelid and con.conrelid = i.indrelid
      where i.indrelid = 'public.role_membership'::regclass and i.indisunique and i.indisvalid
        and i.indnatts = 2
        and i.indkey[0] = (select attnum from pg_attribute where attrelid = i.indrelid and attname = 'member_id')
        and i.indkey[1] = (select attnum from pg_attribute where attrelid = i.indrelid and attname = 'group_id')
      order by 1`,
  );
  const { rows: pk } = await c.query<{ name: string | null; notnull: boolean }>(
    `select (select conname::text from pg_constraint where conrelid = 'public.role_membership'::regclass and contype = 'p') as name,
            (select bool_and(attnotnull) from pg_attribute
              where attrelid = 'public.role_membership'::regclass and attname in ('member_id', 'group_id')) as notnull`,
  );
  return { unique, primaryKey: pk[0].name, notNull: pk[0].notnull };
}

const ROLESYNC_KEY = { index: "rolesync_role_membership_key", constraint: "rolesync_role_membership_key", type: "u" };
const ALEPH_KEY = { index: "role_membership_pkey", constraint: "role_membership_pkey", type: "p" };

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
    await withPgClient(db.url, async (c) => {
      // 12+: NOT NULL columns (000007 set them without a scan). 10 and 11: a validated check instead,
      // since SET NOT NULL would scan the table under ACCESS EXCLUSIVE there.
      const notNull = (await serverMajor(c)) >= 12;
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

    // rolesync run again: no migration pending, its hook drops the redundant key.
    const again = await migrate(db);
    expect(again.executed).toEqual([]);
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
  test("0.1.0 took the primary key's name on a 4.0 database, and Aleph's upgrade failed; 0.2 hands it back and the upgrade passes", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    if ((await withPgClient(db.url, serverMajor)) < 12) {
      // 0.1.0 never ran on PostgreSQL 10 or 11: its first migration does not even parse there,
      // so there is no 0.1.0 database to upgrade (0.2 installs through migrations/compat/pg10-11).
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
