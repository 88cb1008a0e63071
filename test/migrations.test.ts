/*
 * The committed migrations take every starting state a real database can be
 * in to the same end state, lose nothing on the way, and a second run is a no-op.
 */
import { afterAll, describe, expect, test } from "vitest";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { calculateHash } from "graphile-migrate/dist/hash.js";
import path from "node:path";
import type pg from "pg";
import { ADVISORY_LOCK, loadMigrations, runMigrations, MigrationError, packageRoot, type MigrateEvent } from "../src/migrate.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import {
  alephPre41,
  alephPre41Dirty,
  aleph41,
  DIRTY_ROWS,
  fingerprint,
  interruptedIndexBuild,
} from "../scripts/server/fixtures.ts";
import { connect, createTestDatabase, installRelease010, serverMajor, withPgClient, type TestDatabase, sync, createRoles, groupsOf } from "./helpers.ts";

const databases: TestDatabase[] = [];
const folders: string[] = [];
afterAll(async () => {
  for (const db of databases) await db.drop();
  for (const f of folders) rmSync(f, { recursive: true, force: true });
});

async function database(empty: boolean): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty });
  databases.push(db);
  return db;
}

type Pair = { group_id: number | null; member_id: number | null };
const key = (p: Pair) => `${p.group_id},${p.member_id}`;

/** `table` is schema-qualified: public.role_membership, rolesync.role_membership_removed. */
async function pairs(client: pg.Client, table: string): Promise<Pair[]> {
  const { rows } = await client.query<Pair>(`select group_id, member_id from ${table}`);
  return rows;
}

/**
 * The end state every path must reach. Without Aleph's Alembic ledger (public.alembic_version) no
 * one else adds a key. On PostgreSQL 12+ rolesync's is the primary key (or the one the table had),
 * and the index 000010 built for rolesync's own key is gone, as index and as constraint. On 10 and
 * 11, where SET NOT NULL and a primary key scan the table under ACCESS EXCLUSIVE, a table without a
 * primary key is keyed by rolesync's unique constraint, with the validated NOT NULL check kept
 * (migrations/compat/pg10-11); one that had the primary key keeps it.
 */
async function expectMigrated(client: pg.Client) {
  const { rows: pk } = await client.query(`
    select c.conname, array(select a.attname::text from unnest(c.conkey) with ordinality k(n, o)
                            join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n order by k.o) as cols
      from pg_constraint c where c.conrelid = 'public.role_membership'::regclass and c.contype = 'p'`);
  const own = (await serverMajor(client)) < 12 && pk.length === 0;
  const ownKey = own ? "rolesync_role_membership_key" : "role_membership_pkey";
  if (!own) expect(pk).toEqual([{ conname: "role_membership_pkey", cols: ["member_id", "group_id"] }]);
  const { rows: idx } = await client.query(`
    select indexrelid::regclass::text as name, indisvalid from pg_index
     where indrelid = 'public.role_membership'::regclass order by 1`);
  expect(idx).toEqual(
    [
      { name: "role_membership_group_id_member_id_idx", indisvalid: true },
      { name: ownKey, indisvalid: true },
    ].sort((a, b) => a.name.localeCompare(b.name)),
  );
  const { rows: keyed } = await client.query(`
    select to_regclass('public.rolesync_role_membership_key') is not null as index,
           (select count(*)::int from pg_constraint where conname = 'rolesync_role_membership_key') as constraints,
           rolesync.role_membership_key() as key`);
  expect(keyed).toEqual([{ index: own, constraints: own ? 1 : 0, key: ownKey }]);
  // rolesync's own tables are in schema rolesync, none is left in public.
  const { rows: tables } = await client.query(`
    select c.relnamespace::regnamespace::text as schema, c.relname from pg_class c
     where c.relname in ('role_membership_removed', 'role_membership_version') and c.relkind = 'r' order by 2`);
  expect(tables).toEqual([
    { schema: "rolesync", relname: "role_membership_removed" },
    { schema: "rolesync", relname: "role_membership_version" },
  ]);
  const { rows: triggers } = await client.query(
    "select tgname from pg_trigger where tgrelid = 'public.role_membership'::regclass and not tgisinternal",
  );
  expect(triggers).toEqual([{ tgname: "role_membership_guard" }]);
  const { rows: checks } = await client.query(
    "select conname, convalidated from pg_constraint where conrelid = 'public.role_membership'::regclass and contype = 'c'",
  );
  // The NOT NULL scaffolding is gone, or on 10 and 11 validated and kept in place of NOT NULL columns.
  expect(checks).toEqual(own ? [{ conname: "role_membership_not_null", convalidated: true }] : []);
  const { rows: fns } = await client.query(`
    select proname from pg_proc where pronamespace = 'public'::regnamespace
       and proname in ('sync_role_memberships', 'dedupe_role_memberships') order by 1`);
  expect(fns.map((r) => r.proname)).toEqual(["dedupe_role_memberships", "sync_role_memberships"]);
}

/** What a refused run must not leave: anything in schema public, schema rolesync (its ledger too), or graphile-migrate's schema. */
async function leftBehind(client: pg.Client) {
  const { rows } = await client.query(`
    select to_regnamespace('rolesync') is not null as rolesync_schema,
           to_regnamespace('graphile_migrate') is not null as graphile_migrate_schema,
           (select count(*)::int from pg_class where relnamespace = 'public'::regnamespace) as relations,
           (select count(*)::int from pg_type where typnamespace = 'public'::regnamespace) as types,
           (select count(*)::int from pg_proc where pronamespace = 'public'::regnamespace) as functions`);
  return rows[0];
}

/** Aleph's side of the schema: role's columns, constraints and indexes, and the enum. */
async function alephShape(client: pg.Client) {
  const q = async (sql: string) => (await client.query(sql)).rows;
  return {
    columns: await q(`select attname, format_type(atttypid, atttypmod) as type, attnotnull
                        from pg_attribute where attrelid = 'public.role'::regclass and attnum > 0 and not attisdropped
                       order by attnum`),
    constraints: await q(`select conname, pg_get_constraintdef(oid) as def from pg_constraint
                           where conrelid = 'public.role'::regclass order by conname`),
    indexes: await q(`select indexrelid::regclass::text as name, pg_get_indexdef(indexrelid) as def
                        from pg_index where indrelid = 'public.role'::regclass order by 1`),
    labels: await q("select enumlabel from pg_enum where enumtypid = 'public.role_type'::regtype order by enumsortorder"),
  };
}

const ALEPH_TABLES_HOOK = path.join(packageRoot, "migrations", "hooks", "aleph-tables.sql");

/** Migrates, checks the end state and that nothing was lost, then checks a re-run changes nothing. */
async function migrateAndCheck(db: TestDatabase, expectedRemoved: number, opts: { createAlephSchema?: boolean } = {}) {
  const before = await withPgClient(db.url, async (c) =>
    (await c.query("select to_regclass('public.role_membership') is not null as t")).rows[0].t
      ? pairs(c, "public.role_membership")
      : [],
  );
  const first = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, ...opts });
  expect(first.executed.length).toBeGreaterThan(0);
  const snapshot = await withPgClient(db.url, async (c) => {
    await expectMigrated(c);
    const after = await pairs(c, "public.role_membership");
    const archived = await pairs(c, "rolesync.role_membership_removed");
    // Every pair that was there is there exactly once; NULL rows are gone.
    const distinctValid = [...new Set(before.filter((p) => p.group_id !== null && p.member_id !== null).map(key))].sort();
    expect(after.map(key).sort()).toEqual(distinctValid);
    // Nothing is lost: what stayed plus what was archived is everything there was.
    expect([...after, ...archived].map(key).sort()).toEqual(before.map(key).sort());
    expect(archived.length).toBe(expectedRemoved);
    return fingerprint(c);
  });
  const second = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
  expect(second.executed).toEqual([]);
  expect(await withPgClient(db.url, fingerprint)).toEqual(snapshot);
  // And the function works there.
  await withPgClient(db.url, async (c) => {
    const { users, groups } = await createRoles(c, { users: 1, groups: 2 });
    expect(await sync(c, users[0], groups)).toEqual({ added: groups, removed: [] });
    expect(await groupsOf(c, users[0])).toEqual(groups);
  });
}

describe("every starting state reaches the same end state", () => {
  test("an empty database is refused with RS012 and a hint, before anything of ours or Aleph's exists", async () => {
    const db = await database(true);
    const before = await withPgClient(db.url, leftBehind);
    const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.code).toBe("RS012");
    expect(err.message).toBe("Aleph's tables are missing: this database has no public.role and no public.role_membership");
    expect(err.hint).toContain("Install Aleph's schema first (`aleph upgrade`)");
    expect(err.hint).toContain("`rolesync migrate --create-aleph-schema`");
    expect(err.hint).toContain("runMigrations({ createAlephSchema: true })");
    await withPgClient(db.url, async (c) => {
      const after = await leftBehind(c);
      // Nothing at all: the ledger is created after the hooks, so not even rolesync.migrations.
      expect(after).toEqual(before);
      const { rows } = await c.query(`select to_regtype('public.role_type') as role_type, to_regclass('public.role') as role,
                                             to_regclass('public.role_membership') as role_membership,
                                             to_regprocedure('public.sync_role_memberships(integer, integer[], text)') as sync`);
      expect(rows[0]).toEqual({ role_type: null, role: null, role_membership: null, sync: null });
    });
  });

  test("an empty database with createAlephSchema: Aleph 4.1.6's tables, then the same end state", async () => {
    const db = await database(true);
    await migrateAndCheck(db, 0, { createAlephSchema: true });
    const { columns, labels } = await withPgClient(db.url, alephShape);
    const names = columns.map((c: { attname: string }) => c.attname);
    expect(names).toEqual(expect.arrayContaining(["last_login_at", "api_key_digest", "api_key_expires_at", "api_key_expiration_notification_sent"]));
    expect(names).not.toContain("notified_at");
    expect(labels.map((l: { enumlabel: string }) => l.enumlabel)).toEqual(["user", "group", "system"]);
  });

  test("createAlephSchema on an Aleph database changes nothing of Aleph's", async () => {
    const db = await database(true);
    await withPgClient(db.url, (c) => alephPre41(c));
    const before = await withPgClient(db.url, alephShape);
    await migrateAndCheck(db, 0, { createAlephSchema: true });
    const after = await withPgClient(db.url, alephShape);
    expect(after).toEqual(before); // still the old shape, notified_at and all: Aleph upgrades its own tables
    expect(after.columns.map((c: { attname: string }) => c.attname)).toContain("notified_at");
  });

  test("plain SQL: the hook itself, in a session with rolesync.create_aleph_schema = on, creates the tables", async () => {
    const db = await database(true);
    const hook = readFileSync(ALEPH_TABLES_HOOK, "utf8");
    await withPgClient(db.url, async (c) => {
      await expect(c.query(hook)).rejects.toMatchObject({ code: "RS012" });
      await c.query("set rolesync.create_aleph_schema = 'maybe'");
      await expect(c.query(hook)).rejects.toMatchObject({ code: "22023" });
      await c.query("set rolesync.create_aleph_schema = on");
      await c.query(hook);
      await c.query(hook); // and again: the tables are there now, nothing to do
    });
    // The same tables as the runner's opt-in made in the template.
    const template = await createTestDatabase();
    databases.push(template);
    expect(await withPgClient(db.url, alephShape)).toEqual(await withPgClient(template.url, alephShape));
    // A later migration without the opt-in finds them and goes on.
    await migrateAndCheck(db, 0);
  });

  test("Aleph before 4.1, clean: no key, nullable columns", async () => {
    const db = await database(true);
    await withPgClient(db.url, (c) => alephPre41(c));
    await migrateAndCheck(db, 0);
  });

  test("Aleph before 4.1 with duplicate pairs, triplicates and NULL rows", async () => {
    const db = await database(true);
    await withPgClient(db.url, alephPre41Dirty);
    const { duplicates, triplicates, nullRows } = DIRTY_ROWS;
    await migrateAndCheck(db, duplicates + 2 * triplicates + nullRows);
  });

  test("Aleph 4.1+ with role_membership_pkey already present", async () => {
    const db = await database(true);
    await withPgClient(db.url, aleph41);
    const oid = await withPgClient(db.url, async (c) =>
      (await c.query("select 'public.role_membership_pkey'::regclass::oid as oid")).rows[0].oid,
    );
    await migrateAndCheck(db, 0);
    // Recognised, not rebuilt: the very same index.
    const after = await withPgClient(db.url, async (c) =>
      (await c.query("select 'public.role_membership_pkey'::regclass::oid as oid")).rows[0].oid,
    );
    expect(after).toBe(oid);
  });

  test("a half-finished earlier run: an INVALID role_membership_pkey from an interrupted CREATE INDEX CONCURRENTLY", async () => {
    const db = await database(true);
    await withPgClient(db.url, interruptedIndexBuild);
    const invalid = await withPgClient(db.url, async (c) =>
      (await c.query("select indisvalid from pg_index where indexrelid = 'public.role_membership_pkey'::regclass")).rows[0],
    );
    expect(invalid).toEqual({ indisvalid: false });
    const { duplicates, triplicates, nullRows } = DIRTY_ROWS;
    await migrateAndCheck(db, duplicates + 2 * triplicates + nullRows);
  });

  test("our own run interrupted during a concurrent index build: the next run drops the INVALID index and finishes", async () => {
    const db = await database(true);
    await withPgClient(db.url, aleph41);
    // A long report: its snapshot makes CREATE INDEX CONCURRENTLY wait before it can mark the index valid.
    const report = await connect(db.url);
    const operator = await connect(db.url);
    try {
      await report.query("begin isolation level repeatable read");
      await report.query("select count(*) from public.role_membership");
      const first = runMigrations({ databaseUrl: db.url, appRole: APP_ROLE }).catch((e) => e);
      // The operator loses patience and cancels the build while it waits (Ctrl-C does the same).
      for (let cancelled = false; !cancelled; ) {
        // pg_stat_progress_create_index is 12+; before, a build waiting for old snapshots waits on a virtualxid lock.
        const { rows } = await operator.query(
          (await serverMajor(operator)) >= 12
            ? `select pid from pg_stat_progress_create_index
                where datname = current_database() -- clones of one template share table oids
                  and relid = 'public.role_membership'::regclass and phase like 'waiting for%'`
            : `select pid from pg_stat_activity
                where datname = current_database() -- other files build indexes on this server too
                  and query ~* 'create (unique )?index concurrently' and wait_event = 'virtualxid'`,
        );
        if (rows.length) cancelled = (await operator.query("select pg_cancel_backend($1)", [rows[0].pid])).rowCount === 1;
        else await new Promise((r) => setTimeout(r, 10));
      }
      const err = await first;
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.code).toBe("57014"); // canceling statement due to user request
      await report.query("commit");
      const left = await withPgClient(db.url, async (c) =>
        (await c.query(`select indexrelid::regclass::text as name, indisvalid from pg_index
                         where indexrelid = 'public.role_membership_group_id_member_id_idx'::regclass`)).rows,
      );
      expect(left).toEqual([{ name: "role_membership_group_id_member_id_idx", indisvalid: false }]);
    } finally {
      await report.end();
      await operator.end();
    }
    const second = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
    expect(second.executed[0]).toBe("000002-group-index.sql"); // resumed where it stopped
    await withPgClient(db.url, expectMigrated);
  });

  test("a database migrated by 0.1.0 (000001-000008): its tables move to schema rolesync with their rows and grants", async () => {
    const db = await database(true);
    await withPgClient(db.url, alephPre41Dirty);
    // 0.1.0's migrations, by 0.1.0's runner (graphile-migrate's own migrate).
    const old = await installRelease010(db.url, APP_ROLE);
    expect(old.at(-1)).toBe("000008-sync-by-foreign-id.sql");
    const { duplicates, triplicates, nullRows } = DIRTY_ROWS;
    const before = await withPgClient(db.url, async (c) => {
      const { users, groups } = await createRoles(c, { users: 1, groups: 2 });
      await sync(c, users[0], groups);
      return {
        archive: (await c.query("select * from public.role_membership_removed order by id")).rows,
        versions: (await c.query("select * from public.role_membership_version order by member_id")).rows,
      };
    });
    expect(before.archive).toHaveLength(duplicates + 2 * triplicates + nullRows);
    expect(before.versions).toHaveLength(1);

    const result = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
    expect(result.executed).toEqual([
      "000009-sync-oauth-login.sql",
      "000010-own-key-index.sql",
      "000011-sync-bridge.sql",
      "000012-aleph-life-cycle.sql",
      "000013-bounded-messages.sql",
      "000014-faster-no-op-sync.sql",
      "000015-membership-dirt.sql",
      "000016-own-state.sql",
      "000017-aleph-login.sql",
      "000018-validate-not-null-check.sql",
    ]);
    await withPgClient(db.url, async (c) => {
      await expectMigrated(c);
      // The same rows (ids, times, who), the identity sequence with them, and the same grants.
      expect((await c.query("select * from rolesync.role_membership_removed order by id")).rows).toEqual(before.archive);
      expect((await c.query("select * from rolesync.role_membership_version order by member_id")).rows).toEqual(before.versions);
      const { rows } = await c.query(
        `select pg_get_serial_sequence('rolesync.role_membership_removed', 'id') as seq,
                has_schema_privilege($1, 'rolesync', 'usage') as usage,
                has_table_privilege($1, 'rolesync.role_membership_version', 'select, insert, update') as version_rw,
                has_table_privilege($1, 'rolesync.role_membership_removed', 'select') as archive_read`,
        [APP_ROLE],
      );
      expect(rows[0]).toEqual({ seq: "rolesync.role_membership_removed_id_seq", usage: true, version_rw: true, archive_read: false });
    });
    // A second run changes nothing, and the function works there.
    const snapshot = await withPgClient(db.url, fingerprint);
    expect((await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE })).executed).toEqual([]);
    expect(await withPgClient(db.url, fingerprint)).toEqual(snapshot);
    await withPgClient(db.url, async (c) => {
      const { users, groups } = await createRoles(c, { users: 1, groups: 2 });
      expect(await sync(c, users[0], groups)).toEqual({ added: groups, removed: [] });
    });
  });

  test("a database where the migrations were already applied", async () => {
    const db = await database(false); // a clone of the migrated template
    const before = await withPgClient(db.url, fingerprint);
    const result = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
    expect(result.executed).toEqual([]);
    expect(await withPgClient(db.url, fingerprint)).toEqual(before);
  });
});

describe("refusals", () => {
  /** Another application's graphile-migrate ledger: n migrations of its own, chained as graphile-migrate chains them. */
  async function hostLedger(c: pg.Client, n: number) {
    await c.query(`create schema graphile_migrate;
      create table graphile_migrate.migrations (hash text primary key, previous_hash text references graphile_migrate.migrations,
                                                filename text not null, date timestamptz not null default now());
      create table graphile_migrate.current (filename text primary key default 'current.sql', content text not null,
                                             date timestamptz not null default now())`);
    for (let i = 1; i <= n; i++) {
      await c.query("insert into graphile_migrate.migrations (hash, previous_hash, filename) values ($1, $2, $3)", [
        `sha1:host${i}`,
        i === 1 ? null : `sha1:host${i - 1}`,
        `${String(i).padStart(6, "0")}.sql`,
      ]);
    }
  }

  test.each([10, 3])(
    "a database whose own application uses graphile-migrate (%i migrations): rolesync installs in full in its own ledger, and the host's is untouched",
    async (n) => {
      const db = await database(true);
      await withPgClient(db.url, async (c) => {
        await alephPre41(c);
        await hostLedger(c, n);
      });
      const hostRows = async (c: pg.Client) => (await c.query("select * from graphile_migrate.migrations order by filename")).rows;
      const before = await withPgClient(db.url, hostRows);
      const events: MigrateEvent[] = [];
      const result = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, onEvent: (e) => events.push(e) });
      expect(result.executed).toEqual(loadMigrations().map((m) => m.file));
      expect(events.some((e) => e.type === "adopted")).toBe(false); // none of the host's rows is rolesync's
      await withPgClient(db.url, async (c) => {
        await expectMigrated(c);
        expect(await hostRows(c)).toEqual(before);
        const { rows } = await c.query("select filename, hash from rolesync.migrations order by filename");
        expect(rows).toEqual(loadMigrations().map((m) => ({ filename: m.filename, hash: m.hash })));
      });
      expect((await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE })).executed).toEqual([]);
      expect(await withPgClient(db.url, hostRows)).toEqual(before);
    },
  );

  test("a database a newer rolesync migrated is refused with RS013 and told which version to run", async () => {
    const db = await database(false); // migrated by this version
    await withPgClient(db.url, (c) =>
      c.query(`insert into rolesync.migrations (filename, hash, previous_hash)
               select '000099.sql', 'sha1:from-the-future', hash from rolesync.migrations order by filename desc limit 1`),
    );
    const before = await withPgClient(db.url, fingerprint);
    const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE }).catch((e) => e);
    expect(err.code).toBe("RS013");
    expect(err.message).toMatch(/migrated by a newer rolesync: rolesync\.migrations goes on to 000099\.sql/);
    expect(err.hint).toMatch(/^Nothing was changed\./);
    expect(await withPgClient(db.url, fingerprint)).toEqual(before);
  });

  test.each([
    ["a row whose hash is not this version's", "update rolesync.migrations set hash = 'sha1:edited' where filename = '000005.sql'", /does not match this version's migrations: 000005\.sql \(sha1:edited\)/],
    ["a row deleted from the middle", "delete from rolesync.migrations where filename = '000004.sql'", new RegExp(`has ${loadMigrations().length - 1} rows but not 000004\\.sql: some are missing`)],
  ])("a ledger with %s is refused with RS013 before anything runs", async (_what, change, message) => {
    const db = await database(false);
    await withPgClient(db.url, async (c) => {
      await c.query("alter table rolesync.migrations drop constraint migrations_previous_hash_fkey");
      await c.query(change);
    });
    const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE }).catch((e) => e);
    expect(err.code).toBe("RS013");
    expect(err.message).toMatch(message);
    expect(err.hint).toMatch(/^Nothing was changed\./);
  });

  test("a database default rolesync.create_aleph_schema = on does not opt runMigrations in: RS012", async () => {
    const db = await database(true);
    await withPgClient(db.url, (c) => c.query(`alter database ${db.name} set rolesync.create_aleph_schema = on`));
    const before = await withPgClient(db.url, leftBehind);
    const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.code).toBe("RS012");
    expect(await withPgClient(db.url, leftBehind)).toEqual(before);
  });

  test("half of Aleph (role without role_membership) is refused with RS012 even with createAlephSchema", async () => {
    const db = await database(true);
    await withPgClient(db.url, async (c) => {
      await alephPre41(c);
      await c.query("drop table public.role_membership");
    });
    const before = await withPgClient(db.url, alephShape);
    for (const createAlephSchema of [false, true]) {
      const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, createAlephSchema }).catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.code).toBe("RS012");
      expect(err.message).toMatch(createAlephSchema ? /incomplete: .*but no public.role_membership$/ : /missing: .*no public.role_membership$/);
    }
    await withPgClient(db.url, async (c) => {
      expect(await alephShape(c)).toEqual(before);
      const { rows } = await c.query(`select to_regclass('public.role_membership') as m,
                                             to_regnamespace('rolesync') as rolesync`);
      expect(rows[0]).toEqual({ m: null, rolesync: null }); // nor the ledger

    });
  });

  test("a role_membership keyed on other columns is refused with RS010, and nothing changes", async () => {
    const db = await database(true);
    await withPgClient(db.url, async (c) => {
      await alephPre41(c);
      await c.query("alter table public.role_membership add column id serial primary key");
    });
    const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.code).toBe("RS010");
    expect(err.message).toContain("primary key on (id)");
    const left = await withPgClient(db.url, async (c) =>
      (await c.query(`select to_regprocedure('public.sync_role_memberships(integer, integer[], text)') as f,
                             (select count(*)::int from pg_constraint where conrelid = 'public.role_membership'::regclass
                                and contype <> 'n') as constraints`)).rows[0], // 18 lists NOT NULL too
    );
    expect(left).toEqual({ f: null, constraints: 3 }); // the two FKs and the other key, as they were
  });

  test("an application role that does not exist is refused before anything runs", async () => {
    const db = await database(true);
    const err = await runMigrations({ databaseUrl: db.url, appRole: "no_such_role_here" }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.code).toBe("42704");
    expect(err.hint).toMatch(/ROLESYNC_APP_ROLE/);
    const created = await withPgClient(db.url, async (c) =>
      (await c.query("select coalesce(to_regclass('rolesync.migrations'), to_regclass('graphile_migrate.migrations')) as m")).rows[0].m,
    );
    expect(created).toBeNull();
  });
});

describe("000010 builds rolesync's own key index only where Aleph has yet to add its key (its RunIf condition)", () => {
  test.each([
    ["no Alembic ledger (not Aleph's, or a standalone database)", null, false],
    ["Aleph 4.0 (8adf50aadcb0): Aleph's 4.1 upgrade adds role_membership_pkey later", "8adf50aadcb0", true],
    ["Aleph 4.1 or later (31e24765dee3)", "31e24765dee3", false],
  ])("%s", async (_what, revision, builds) => {
    const db = await database(true);
    await withPgClient(db.url, async (c) => {
      await alephPre41Dirty(c);
      if (revision) {
        await c.query("create table public.alembic_version (version_num varchar(32) not null primary key)");
        await c.query("insert into public.alembic_version values ($1)", [revision]);
      }
    });
    const events: MigrateEvent[] = [];
    const result = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, onEvent: (e) => events.push(e) });
    // Recorded either way: the ledger holds every migration, and a second run has nothing to do.
    expect(result.executed).toContain("000010-own-key-index.sql");
    expect(result.skipped).toEqual(builds ? [] : ["000010-own-key-index.sql"]);
    const skipped = events.find((e) => e.type === "skipped");
    if (builds) {
      expect(skipped).toBeUndefined();
      expect(events).toContainEqual({ type: "migration", name: "000010-own-key-index.sql" });
    } else {
      expect(skipped).toEqual({ type: "skipped", name: "000010-own-key-index.sql", reason: expect.stringMatching(/role_membership_pkey keys this table to stay/) });
    }
    await withPgClient(db.url, async (c) => {
      const { rows } = await c.query(
        `select conname, contype from pg_constraint where conrelid = 'public.role_membership'::regclass and contype in ('p', 'u')`,
      );
      // Where it was built, 000012 made it rolesync's UNIQUE key; elsewhere the primary key keys the table.
      expect(rows).toEqual(
        builds
          ? [{ conname: "rolesync_role_membership_key", contype: "u" }]
          : [{ conname: (await serverMajor(c)) < 12 ? "rolesync_role_membership_key" : "role_membership_pkey", contype: (await serverMajor(c)) < 12 ? "u" : "p" }],
      );
      expect((await c.query("select count(*)::int as n from rolesync.migrations")).rows[0].n).toBe(loadMigrations().length);
    });
    expect((await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE })).executed).toEqual([]);
  });
});

describe("strong locks wait at most lock_timeout, and the runner retries", () => {
  test("a long transaction holding role_membership delays the migration, which retries and then succeeds", async () => {
    const db = await database(true);
    await withPgClient(db.url, (c) => alephPre41(c));
    const holder = await connect(db.url);
    try {
      await holder.query("begin");
      await holder.query("lock table public.role_membership in access share mode"); // e.g. a long report
      const events: MigrateEvent[] = [];
      const migrating = runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, onEvent: (e) => events.push(e) });
      await new Promise((r) => setTimeout(r, 2500));
      expect(events.some((e) => e.type === "retry")).toBe(true);
      await holder.query("commit");
      await migrating;
      const retry = events.find((e) => e.type === "retry");
      expect(retry).toMatchObject({ reason: expect.stringMatching(/lock_timeout/) });
      await withPgClient(db.url, expectMigrated);
    } finally {
      await holder.end();
    }
  });

  test("when the retries run out it fails with 55P03, a hint, and nothing half-done", async () => {
    const db = await database(true);
    await withPgClient(db.url, (c) => alephPre41(c));
    const holder = await connect(db.url);
    try {
      await holder.query("begin");
      await holder.query("lock table public.role_membership in access share mode");
      const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, lockRetries: 1 }).catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.code).toBe("55P03");
      expect(err.hint).toMatch(/pg_stat_activity/);
      await holder.query("commit");
      const applied = await withPgClient(db.url, async (c) =>
        (await c.query("select count(*)::int as n from rolesync.migrations")).rows[0].n,
      );
      expect(applied).toBe(0); // 000001 rolled back as a whole
    } finally {
      await holder.end();
    }
  });
});

describe("maintenance_work_mem for the index builds", () => {
  /**
   * A copy of the migrations folder with one more migration, chained and
   * hashed as graphile-migrate does, that records the session's
   * maintenance_work_mem: the setting the index builds before it ran with.
   */
  function folderRecordingSetting(): string {
    const dir = mkdtempSync(path.join(tmpdir(), "rolesync-mwm-"));
    folders.push(dir);
    cpSync(path.join(packageRoot, "migrations"), dir, { recursive: true, filter: (src) => !src.endsWith("current.sql") });
    const last = loadMigrations().at(-1)!;
    const body = "create table public.recorded_setting as select current_setting('maintenance_work_mem') as v;\n";
    const number = String(Number(last.filename.slice(0, 6)) + 1).padStart(6, "0");
    writeFileSync(
      path.join(dir, "committed", `${number}-record-setting.sql`),
      `--! Previous: ${last.hash}\n--! Hash: ${calculateHash(body, last.hash)}\n\n${body}`,
    );
    return dir;
  }

  test.each([
    ["the server's 64MB is raised to the default 256MB", "64MB", undefined, "256MB"],
    ["a server set higher (1GB) keeps its own", "1GB", undefined, "1GB"],
    ["an explicit size is used as given", "1GB", "96MB", "96MB"],
    ["'server' leaves the server's setting alone", "64MB", "server", "64MB"],
  ])("%s", async (_what, serverSetting, option, expected) => {
    const db = await database(true);
    await withPgClient(db.url, async (c) => {
      await alephPre41(c);
      await c.query(`alter database ${db.name} set maintenance_work_mem = '${serverSetting}'`);
    });
    await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, migrationsFolder: folderRecordingSetting(), maintenanceWorkMem: option });
    const { rows } = await withPgClient(db.url, (c) => c.query("select v from public.recorded_setting"));
    expect(rows).toEqual([{ v: expected }]);
  });

  test("a size PostgreSQL does not take is refused (22023) before anything runs", async () => {
    const db = await database(true);
    await withPgClient(db.url, alephPre41);
    const before = await withPgClient(db.url, leftBehind);
    const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, maintenanceWorkMem: "lots" }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.code).toBe("22023");
    expect(err.message).toMatch(/maintenance_work_mem/);
    expect(err.hint).toMatch(/^Give maintenance_work_mem a size PostgreSQL accepts/);
    expect(await withPgClient(db.url, leftBehind)).toEqual(before);
  });
});

describe("one rolesync migration at a time (rolesync's advisory lock)", () => {
  test("a second runner waits while the lock is held elsewhere, retries, and then migrates", async () => {
    const db = await database(true);
    await withPgClient(db.url, (c) => alephPre41(c));
    const other = await connect(db.url); // another `rolesync migrate`, or the psql script
    try {
      await other.query("select pg_advisory_lock($1)", [ADVISORY_LOCK]);
      const events: MigrateEvent[] = [];
      const migrating = runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, onEvent: (e) => events.push(e) });
      await new Promise((r) => setTimeout(r, 1500));
      expect(events).toContainEqual(expect.objectContaining({ type: "retry", reason: "another rolesync migration is running" }));
      expect(events.some((e) => e.type === "migration")).toBe(false); // nothing ran meanwhile
      await other.query("select pg_advisory_unlock($1)", [ADVISORY_LOCK]);
      await migrating;
      await withPgClient(db.url, expectMigrated);
    } finally {
      await other.end();
    }
  });

  test("when the retries run out: a hint to wait, and nothing changed", async () => {
    const db = await database(true);
    await withPgClient(db.url, (c) => alephPre41(c));
    const before = await withPgClient(db.url, leftBehind);
    const other = await connect(db.url);
    try {
      await other.query("select pg_advisory_lock($1)", [ADVISORY_LOCK]);
      const err = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, lockRetries: 1 }).catch((e) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect(err.hint).toMatch(/Another `rolesync migrate` \(or rolesync\.sql\) is running on this database/);
      expect(await withPgClient(db.url, leftBehind)).toEqual(before);
    } finally {
      await other.end();
    }
  });
});
