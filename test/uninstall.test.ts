/*
 * The way back: `rolesync uninstall` (the CLI, the runner and the psql
 * script), and adopting again afterwards in every order, on Aleph's real
 * states: 4.0 with duplicates and NULL rows, its 4.1 upgrade between the two,
 * 4.1+, a database rolesync 0.1.0 migrated, and one rolled back by the hand
 * SQL docs/aleph.md showed until 0.2.0. Each keeps every membership and
 * every archived row, and ends with exactly one unique index on
 * (member_id, group_id), under the name Aleph's Alembic state calls for.
 *
 * The catalog test: install, then uninstall, leaves the catalog as it was
 * (scripts/tools/schema.ts's dump, and every object outside the system schemas),
 * except for the key and the archive; so the list of what uninstall removes
 * cannot fall behind what a later migration adds.
 */
import { afterAll, describe, expect, test } from "vitest";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import type pg from "pg";
import { ADVISORY_LOCK, packageRoot, runMigrations } from "../src/migrate.ts";
import { runUninstall } from "../src/uninstall.ts";
import { uninstallScript } from "../src/psql.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { pgEnv } from "../scripts/test/pgtap.ts";
import { describeSchema } from "../scripts/tools/schema.ts";
import { ALEPH_KEY, alephDatabase as makeAlephDatabase, alephUpgrade, keys, ROLESYNC_KEY, type Release } from "./aleph-fixtures.ts";
import { connect, createTestDatabase, deferred, installRelease010, runNode, serverMajor, withPgClient, type TestDatabase } from "./helpers.ts";

const databases: TestDatabase[] = [];
const dir = mkdtempSync(path.join(tmpdir(), "rolesync-uninstall-"));
afterAll(async () => {
  for (const db of databases) await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

const script = path.join(dir, "rolesync-uninstall.sql");
writeFileSync(script, uninstallScript({ version: "0.0.0-test", command: "rolesync sql --uninstall (test)" }));
const oldRollback = path.join(dir, "old-rollback.sql");

async function alephDatabase(release: Release, opts: { dirty?: boolean } = {}): Promise<TestDatabase> {
  const db = await makeAlephDatabase(release, opts);
  databases.push(db);
  return db;
}

const migrate = (db: TestDatabase) => runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });

/** An Aleph 4.0 database whose adoption stopped before its key: 000001-000005 applied. */
async function interruptedBeforeKey(): Promise<TestDatabase> {
  const db = await alephDatabase("4.0", { dirty: true });
  const partial = mkdtempSync(path.join(dir, "partial-"));
  cpSync(path.join(packageRoot, "migrations"), partial, { recursive: true, filter: (src) => !/committed\/0000(0[6-9]|[1-9]\d)/.test(src) });
  await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, migrationsFolder: partial });
  return db;
}

function rolesync(args: string[], db: TestDatabase) {
  return runNode(path.join(packageRoot, "dist", "bin.js"), args, { DATABASE_URL: db.url, ROLESYNC_APP_ROLE: APP_ROLE });
}

function psql(db: TestDatabase, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("psql", ["-X", "-v", "ON_ERROR_STOP=1", ...args], { env: { ...process.env, ...pgEnv(db.url) } });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, output }));
  });
}

/** The hand rollback of docs/aleph.md section 8 as it stood until 0.2.0, with the application role filled in. */
const OLD_HAND_ROLLBACK = `
begin;
set local lock_timeout = '1s';
drop trigger if exists role_membership_guard on public.role_membership;
drop function if exists public.sync_oauth_login(text, text, text, text[], text);
drop function if exists public.sync_role_memberships_by_foreign_id(text, text[], text);
drop function if exists public.sync_role_memberships(integer, integer[], text);
drop function if exists public.dedupe_role_memberships();
drop function if exists public.role_membership_check();
drop function if exists public.role_membership_guard();
drop function if exists rolesync.aleph_adds_primary_key();
drop function if exists rolesync.role_membership_key();
drop function if exists rolesync.format_list(text[], integer);
drop view if exists public.role_membership_duplicates;
drop table if exists rolesync.role_membership_version;
revoke update (email, updated_at) on public.role from ${APP_ROLE};
drop table if exists rolesync.migrations;
commit;
drop index concurrently if exists public.role_membership_group_id_member_id_idx;
`;

writeFileSync(oldRollback, OLD_HAND_ROLLBACK);

/** Every membership, sorted: what no step may lose. */
async function memberships(c: pg.Client): Promise<string[]> {
  const { rows } = await c.query<{ p: string }>(
    "select member_id || ':' || group_id as p from public.role_membership order by member_id, group_id",
  );
  return rows.map((r) => r.p);
}

/** Every archived row, wherever the archive is. */
async function archive(c: pg.Client): Promise<string[]> {
  for (const table of ["rolesync.role_membership_removed", "public.role_membership_removed"]) {
    const { rows: t } = await c.query<{ ok: boolean }>("select to_regclass($1) is not null as ok", [table]);
    if (!t[0].ok) continue;
    const { rows } = await c.query<{ r: string }>(
      `select concat_ws(':', id, member_id, group_id, reason, removed_at) as r from ${table} order by id`,
    );
    return rows.map((r) => r.r);
  }
  return [];
}

/**
 * The catalog, as blocks keyed by their heading: scripts/tools/schema.ts's dump
 * (rolesync's objects and Aleph's, with everything attached, privileges
 * included), plus one line per object outside the system schemas, so that
 * an object of any name or schema is seen.
 */
async function catalog(c: pg.Client): Promise<Map<string, string>> {
  const blocks = new Map<string, string>();
  for (const block of (await describeSchema(c)).split(/\n(?=--\n-- Name: )/)) {
    const name = /^--\n-- Name: (.*)$/m.exec(block)?.[1];
    if (name) blocks.set(name, block);
  }
  const { rows } = await c.query<{ o: string }>(
    `select 'relation ' || n.nspname || '.' || c.relname || ' (' || c.relkind::text || ')' as o
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and n.nspname !~ '^pg_(temp|toast_temp)_'
     union all
     select 'function ' || p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_temp_'
     union all
     select 'schema ' || nspname from pg_namespace
      where nspname not in ('pg_catalog', 'information_schema', 'pg_toast', 'public') and nspname !~ '^pg_(temp|toast_temp)_'
     union all
     select 'constraint ' || conname || ' on ' || conrelid::regclass::text from pg_constraint
      where connamespace = 'public'::regnamespace
     union all
     select 'trigger ' || tgname from pg_trigger where not tgisinternal
     union all
     select 'type ' || t.oid::regtype::text from pg_type t join pg_namespace n on n.oid = t.typnamespace
      where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and n.nspname !~ '^pg_(temp|toast_temp)_'`,
  );
  for (const r of rows) blocks.set(r.o, r.o);
  return blocks;
}

/** The names of the blocks that differ between two catalogs, sorted. */
function changed(before: Map<string, string>, after: Map<string, string>): string[] {
  const names = new Set([...before.keys(), ...after.keys()]);
  return [...names].filter((n) => before.get(n) !== after.get(n)).sort();
}

/**
 * Differences that are the key's or the archive's, which uninstall keeps by design
 * (on 18 the key's NOT NULL columns are catalogued as constraints too: role_membership_group_id_not_null, ...).
 */
const KEY_OR_ARCHIVE =
  /role_membership_removed|rolesync_role_membership_key|role_membership_pkey|role_membership(_group_id|_member_id)?_not_null|^schema rolesync$|^rolesync; Type: SCHEMA;|^role_membership; Type: TABLE; Schema: public/;

/**
 * Privileges on Aleph's objects, directly from the catalog. An ACL that was
 * never set reads as its default: GRANT writes the owner's default entries
 * out, and REVOKE leaves them, which grants exactly the same.
 */
async function privileges(c: pg.Client): Promise<unknown> {
  const { rows } = await c.query(
    `select c.relname,
            coalesce(c.relacl, acldefault(case when c.relkind = 'S' then 's' else 'r' end::"char", c.relowner))::text as acl,
            (select string_agg(a.attname || '=' || a.attacl::text, ' ' order by a.attname)
               from pg_attribute a where a.attrelid = c.oid and a.attacl is not null and a.attacl <> '{}') as columns
       from pg_class c where c.oid in ('public.role'::regclass, 'public.role_membership'::regclass, 'public.role_id_seq'::regclass)
      order by 1`,
  );
  return rows;
}

async function checkFailures(c: pg.Client): Promise<string[]> {
  const { rows } = await c.query<{ check_name: string; ok: boolean }>("select check_name, ok from public.role_membership_check()");
  return rows.filter((r) => !r.ok).map((r) => r.check_name);
}

const alembic = async (c: pg.Client) => (await c.query<{ v: string }>("select version_num as v from public.alembic_version")).rows[0].v;

describe("Aleph 4.0 with duplicates and NULL rows", () => {
  test("the operator's walk, with the CLI: migrate, uninstall, migrate again, Aleph's 4.1 upgrade, migrate: one key, privileges as they were, the archive kept, check all good", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    const grantsBefore = await withPgClient(db.url, privileges);
    const step = async (args: string[]) => {
      const run = await rolesync(args, db);
      expect(run.code, `${args.join(" ")}: ${run.stdout}${run.stderr}`).toBe(0);
      return run;
    };
    await step(["migrate"]);
    const rows = await withPgClient(db.url, memberships);
    const kept = await withPgClient(db.url, archive);
    expect(kept).toHaveLength(6);

    await step(["uninstall"]);
    await withPgClient(db.url, async (c) => {
      expect(await privileges(c)).toEqual(grantsBefore);
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
    });

    // Until 0.2.0 this stopped at 000012 with 42P07, and keyed the table twice.
    const again = await step(["migrate"]);
    expect(again.stdout).toMatch(/→ 000006-primary-key-index\.sql: nothing to do, role_membership is keyed already \(recorded\)/);
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
      expect(await archive(c)).toEqual(kept);
      expect(await memberships(c)).toEqual(rows);
    });

    // Aleph's own upgrade passes, and rolesync's next run leaves Aleph's key alone.
    expect(await withPgClient(db.url, alephUpgrade)).toContain("131674bde902");
    await step(["migrate"]);
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ALEPH_KEY]);
      expect(await archive(c)).toEqual(kept);
      expect(await memberships(c)).toEqual(rows);
    });
    const check = await step(["check"]);
    expect(check.stdout).toMatch(/rolesync check: all good/);
  });

  test("migrate, the hand rollback the docs showed until 0.2.0, migrate again: no 42P07, one key under rolesync's name, the archive kept; Aleph's upgrade passes", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    await migrate(db);
    const rows = await withPgClient(db.url, memberships);
    const kept = await withPgClient(db.url, archive);
    const rollback = await psql(db, ["-f", oldRollback]);
    expect(rollback.code, rollback.output).toBe(0);
    const again = await migrate(db);
    expect(again.executed).toContain("000012-aleph-life-cycle.sql");
    expect(again.skipped).toEqual(expect.arrayContaining(["000006-primary-key-index.sql", "000007-primary-key.sql"]));
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
      expect(await archive(c)).toEqual(kept);
      expect(await memberships(c)).toEqual(rows);
      expect(await checkFailures(c)).toEqual([]);
      expect(await alephUpgrade(c)).toContain("131674bde902");
    });
  });

  test("an operator who already met the 42P07 (both archives, two keys): migrate merges the archives and leaves rolesync's key", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    await migrate(db);
    const rows = await withPgClient(db.url, memberships);
    const kept = await withPgClient(db.url, archive);
    expect(await psql(db, ["-f", oldRollback])).toMatchObject({ code: 0 });
    // The migrations as builds before 0.2.0 ran them: no RunIf on 000006 and 000007, no adopt-again hook. They stop at 000012.
    const old = mkdtempSync(path.join(dir, "old-"));
    cpSync(path.join(packageRoot, "migrations"), old, { recursive: true });
    for (const f of readdirSync(path.join(old, "committed"))) {
      const file = path.join(old, "committed", f);
      writeFileSync(file, readFileSync(file, "utf8").replace(/^--! RunIf: conditions\/no-key-yet\.sql\n/m, ""));
    }
    writeFileSync(path.join(old, "hooks", "adopt-again.sql"), "select 1;\n");
    const failed = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, migrationsFolder: old }).catch((e) => e);
    expect(failed.code).toBe("42P07");
    expect(failed.message).toMatch(/relation "role_membership_removed" already exists in schema "rolesync"/);
    await withPgClient(db.url, async (c) => {
      // What those builds left: a second archive in public, and on 12+ the table keyed twice (10 and 11 run
      // migrations/compat/pg10-11, whose 000006 and 000007 build rolesync's key only where there is none).
      const { rows: t } = await c.query("select to_regclass('public.role_membership_removed') is not null as second");
      expect(t[0].second).toBe(true);
      expect((await keys(c)).unique).toEqual((await serverMajor(c)) >= 12 ? [ALEPH_KEY, ROLESYNC_KEY] : [ROLESYNC_KEY]);
    });
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
      expect(await archive(c)).toEqual(kept);
      expect(await memberships(c)).toEqual(rows);
      expect(await checkFailures(c)).toEqual([]);
      expect(await alephUpgrade(c)).toContain("131674bde902");
    });
  });

  test("adopt, uninstall, adopt: the catalog is as before but for the key and the archive; adopting again reuses the archive and keeps one key", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    const before = await withPgClient(db.url, catalog);
    const grantsBefore = await withPgClient(db.url, privileges);
    await migrate(db);
    const rows = await withPgClient(db.url, memberships);
    const kept = await withPgClient(db.url, archive);

    const result = await runUninstall({ databaseUrl: db.url });
    expect(result.steps.length).toBeGreaterThan(10);
    expect(result.kept.map((k) => k.why).join("\n")).toMatch(/rolesync_role_membership_key[\s\S]*archive rolesync\.role_membership_removed \(6 rows\)/);
    await withPgClient(db.url, async (c) => {
      const after = await catalog(c);
      const diff = changed(before, after);
      expect(diff.filter((n) => !KEY_OR_ARCHIVE.test(n))).toEqual([]);
      expect(diff.length).toBeGreaterThan(0);
      expect(await privileges(c)).toEqual(grantsBefore);
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
      expect(await memberships(c)).toEqual(rows);
      expect(await archive(c)).toEqual(kept);
      expect(await alembic(c)).toBe("8adf50aadcb0");
    });

    // Again: only what is left, which is nothing before Aleph's upgrade.
    expect((await runUninstall({ databaseUrl: db.url })).steps).toEqual([]);

    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
      expect(await memberships(c)).toEqual(rows);
      expect(await archive(c)).toEqual(kept);
      expect(await checkFailures(c)).toEqual([]);
    });
    expect(await withPgClient(db.url, alephUpgrade)).toContain("131674bde902");
  });

  test("adopt, uninstall, Aleph's 4.1 upgrade, adopt: the upgrade passes beside rolesync's key, and adopting keeps Aleph's; or uninstall again drops rolesync's", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    await migrate(db);
    const rows = await withPgClient(db.url, memberships);
    const kept = await withPgClient(db.url, archive);
    await runUninstall({ databaseUrl: db.url });
    expect(await withPgClient(db.url, alephUpgrade)).toContain("131674bde902");
    await withPgClient(db.url, async (c) => expect((await keys(c)).unique).toEqual([ALEPH_KEY, ROLESYNC_KEY]));

    // Uninstall again after the upgrade: rolesync's key goes, Aleph's stays.
    const second = await runUninstall({ databaseUrl: db.url, dryRun: true });
    expect(second.steps.map((s) => s.statement)).toContain(
      "alter table public.role_membership drop constraint rolesync_role_membership_key",
    );
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ALEPH_KEY]);
      expect(await memberships(c)).toEqual(rows);
      expect(await archive(c)).toEqual(kept);
      expect(await checkFailures(c)).toEqual([]);
    });
    await runUninstall({ databaseUrl: db.url });
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ALEPH_KEY]);
      expect(await memberships(c)).toEqual(rows);
    });
  });
});

describe("Aleph 4.1+", () => {
  test("adopt, uninstall, adopt: Aleph's key untouched throughout, the catalog as before but for the archive", async () => {
    const db = await alephDatabase("4.1+");
    const before = await withPgClient(db.url, catalog);
    const oid = async () => withPgClient(db.url, async (c) => (await c.query("select 'public.role_membership_pkey'::regclass::oid as o")).rows[0].o);
    const keyOid = await oid();
    await migrate(db);
    await runUninstall({ databaseUrl: db.url });
    await withPgClient(db.url, async (c) => {
      const diff = changed(before, await catalog(c));
      expect(diff.filter((n) => !/role_membership_removed|^schema rolesync$|^rolesync; Type: SCHEMA;/.test(n))).toEqual([]);
      expect((await keys(c)).unique).toEqual([ALEPH_KEY]);
    });
    expect(await oid()).toBe(keyOid);
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ALEPH_KEY]);
      expect(await checkFailures(c)).toEqual([]);
    });
    expect(await oid()).toBe(keyOid);
  });
});

describe("the application role's privileges", () => {
  test("the app role owns Aleph's tables: uninstall revokes nothing of its own, and Aleph's login works afterwards", async () => {
    const db = await alephDatabase("4.1+");
    await withPgClient(db.url, (c) =>
      c.query(`alter table public.role owner to ${APP_ROLE};
               alter table public.role_membership owner to ${APP_ROLE};
               alter type public.role_type owner to ${APP_ROLE};`),
    );
    const grantsBefore = await withPgClient(db.url, privileges);
    await migrate(db);
    const result = await runUninstall({ databaseUrl: db.url });
    // Never a table's privilege from its owner (a column's entry rolesync wrote goes; the table's UPDATE covers it).
    expect(result.steps.filter((s) => /^revoke \w+ on (table|sequence) public\./.test(s.statement!))).toEqual([]);
    await withPgClient(db.url, async (c) => {
      expect(await privileges(c)).toEqual(grantsBefore);
      // Aleph's own login as the app role: its load_or_create, its clear_roles() and add_role() statements, and a commit.
      await c.query(`set role ${APP_ROLE}`);
      await c.query("begin");
      const { rows: u } = await c.query<{ id: number }>(
        `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at)
         values ('oidc:owner-login', 'Owner', 'user', false, false, false, false, now(), now()) returning id`,
      );
      const { rows: g } = await c.query<{ id: number }>("select id from public.role where type = 'group' order by id limit 2");
      await c.query("update public.role set updated_at = now(), last_login_at = now() where id = $1", [u[0].id]);
      await c.query("delete from public.role_membership where member_id = $1", [u[0].id]);
      for (const x of g) await c.query("insert into public.role_membership (group_id, member_id) values ($1, $2)", [x.id, u[0].id]);
      await c.query("commit");
      await c.query("reset role");
    });
  });

  test("an app role that held SELECT on role before keeps it; what rolesync added goes, ownership or not", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    await withPgClient(db.url, (c) => c.query(`revoke all on public.role, public.role_membership, public.role_id_seq from ${APP_ROLE};
                                               grant select on public.role to ${APP_ROLE}`));
    const grantsBefore = await withPgClient(db.url, privileges);
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      const { rows } = await c.query("select grants_recorded, app_role from rolesync.installation");
      expect(rows).toEqual([{ grants_recorded: true, app_role: APP_ROLE }]);
      const { rows: g } = await c.query<{ p: string }>(
        "select object || coalesce(nullif(' (' || column_name || ')', ' ()'), '') || ' ' || privilege as p from rolesync.granted order by 1",
      );
      expect(g.map((r) => r.p)).not.toContain("public.role SELECT");
      expect(g.map((r) => r.p)).toContain("public.role INSERT");
    });
    await runUninstall({ databaseUrl: db.url });
    await withPgClient(db.url, async (c) => {
      expect(await privileges(c)).toEqual(grantsBefore);
      const { rows } = await c.query("select has_table_privilege($1, 'public.role', 'select') as ok", [APP_ROLE]);
      expect(rows[0].ok).toBe(true);
    });
  });
});

describe("a database rolesync 0.1.0 migrated", () => {
  test("0.1.0, the old hand rollback, then today's migrate: 0.1.0's ledger rows are not adopted over missing objects; everything is kept", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    await installRelease010(db.url, APP_ROLE);
    const rows = await withPgClient(db.url, memberships);
    const kept = await withPgClient(db.url, archive);
    expect(kept).toHaveLength(6);
    const rollback = await psql(db, ["-f", oldRollback]);
    expect(rollback.code, rollback.output).toBe(0);

    const events: string[] = [];
    const result = await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, onEvent: (e) => events.push(e.type) });
    expect(events).toContain("not-adopted");
    expect(result.executed[0]).toBe("000001-schema.sql");
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
      expect(await memberships(c)).toEqual(rows);
      expect(await archive(c)).toEqual(kept);
      expect(await checkFailures(c)).toEqual([]);
      expect(await alephUpgrade(c)).toContain("131674bde902");
    });
  });

  test("0.1.0, then today's uninstall: its primary key becomes rolesync's key, its ledger rows go and graphile-migrate's empty schema with them, the archive stays in public", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    await installRelease010(db.url, APP_ROLE);
    const rows = await withPgClient(db.url, memberships);
    const kept = await withPgClient(db.url, archive);
    const result = await runUninstall({ databaseUrl: db.url });
    if ((await withPgClient(db.url, serverMajor)) >= 12) {
      // 0.1.0 took role_membership_pkey on 12+: swapped, after its index is built concurrently.
      expect(result.steps[0].statement).toMatch(/^create unique index concurrently if not exists rolesync_role_membership_key/);
      expect(result.steps.map((s) => s.statement)).toContain(
        "alter table public.role_membership add constraint rolesync_role_membership_key unique using index rolesync_role_membership_key, drop constraint role_membership_pkey",
      );
    } else {
      // On 10 and 11 its stand-ins keyed the table under rolesync's name already.
      expect(result.steps.map((s) => s.statement).join("\n")).not.toMatch(/rolesync_role_membership_key/);
    }
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
      expect(await memberships(c)).toEqual(rows);
      expect(await archive(c)).toEqual(kept);
      const { rows: s } = await c.query(
        "select to_regnamespace('graphile_migrate') is null as gm_gone, to_regclass('public.role_membership_removed') is not null as archive_in_public",
      );
      expect(s[0]).toEqual({ gm_gone: true, archive_in_public: true });
      expect(await alephUpgrade(c)).toContain("131674bde902");
    });
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect((await keys(c)).unique).toEqual([ALEPH_KEY]);
      expect(await archive(c)).toEqual(kept);
      expect(await checkFailures(c)).toEqual([]);
    });
  });

  test("another application's rows in graphile_migrate.migrations stay, and so does its schema", async () => {
    const db = await alephDatabase("4.1+");
    await withPgClient(db.url, (c) =>
      c.query(`create schema graphile_migrate;
               create table graphile_migrate.migrations (filename text primary key, hash text not null, previous_hash text, date timestamptz not null default now());
               create table graphile_migrate.current (filename text primary key default 'current.sql', content text not null, date timestamptz not null default now());
               insert into graphile_migrate.migrations (filename, hash) values ('000001.sql', 'sha1:another-application')`),
    );
    await migrate(db);
    await runUninstall({ databaseUrl: db.url });
    await withPgClient(db.url, async (c) => {
      const { rows } = await c.query("select filename, hash from graphile_migrate.migrations");
      expect(rows).toEqual([{ filename: "000001.sql", hash: "sha1:another-application" }]);
    });
  });
});

describe("refusals, each changing nothing", () => {
  test("a table without a key (an install interrupted before its key): RS014", async () => {
    const db = await interruptedBeforeKey();
    const before = await withPgClient(db.url, catalog);
    const err = await runUninstall({ databaseUrl: db.url }).catch((e) => e);
    expect(err.code).toBe("RS014");
    expect(err.hint).toMatch(/rolesync migrate/);
    expect(changed(before, await withPgClient(db.url, catalog))).toEqual([]);
    const cli = await rolesync(["uninstall"], db);
    expect(cli.code).toBe(3);
    expect(cli.stderr).toMatch(/ERROR RS014: role_membership has no key/);
  });

  test("a ledger of a newer rolesync: RS013", async () => {
    const db = await alephDatabase("4.1+");
    await migrate(db);
    await withPgClient(db.url, (c) =>
      c.query("insert into rolesync.migrations (filename, hash, previous_hash) select '000099.sql', 'sha1:newer', max(hash) from rolesync.migrations where filename = (select max(filename) from rolesync.migrations)"),
    );
    const before = await withPgClient(db.url, catalog);
    const err = await runUninstall({ databaseUrl: db.url }).catch((e) => e);
    expect(err.code).toBe("RS013");
    expect(changed(before, await withPgClient(db.url, catalog))).toEqual([]);
  });

  test("a lock not granted in time: retried, then done; with no retries left, 55P03 and nothing changed", async () => {
    const db = await alephDatabase("4.1+");
    await migrate(db);
    const holder = await connect(db.url);
    try {
      await holder.query("begin");
      await holder.query("lock table public.role_membership in access share mode");
      const before = await withPgClient(db.url, catalog);
      const err = await runUninstall({ databaseUrl: db.url, lockRetries: 0 }).catch((e) => e);
      expect(err.code).toBe("55P03");
      expect(err.hint).toMatch(/Nothing was changed/);
      expect(changed(before, await withPgClient(db.url, catalog))).toEqual([]);

      const retried = deferred();
      const run = runUninstall({
        databaseUrl: db.url,
        onEvent: (e) => {
          if (e.type === "retry") retried.resolve();
        },
      });
      await retried.promise;
      await holder.query("commit");
      const result = await run;
      expect(result.steps.length).toBeGreaterThan(0);
    } finally {
      await holder.end();
    }
    await withPgClient(db.url, async (c) => expect((await keys(c)).unique).toEqual([ALEPH_KEY]));
  });

  test("a rolesync migration running: uninstall waits its turn", async () => {
    const db = await alephDatabase("4.1+");
    await migrate(db);
    const holder = await connect(db.url);
    try {
      await holder.query("select pg_advisory_lock($1)", [ADVISORY_LOCK]);
      const err = await runUninstall({ databaseUrl: db.url, lockRetries: 0 }).catch((e) => e);
      expect(err.message).toMatch(/a rolesync migration is running/);
    } finally {
      await holder.end();
    }
  });
});

describe("the CLI and the psql script", () => {
  test("`rolesync uninstall --dry-run` lists what it would run and what stays, in text and JSON, and changes nothing", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    await migrate(db);
    const before = await withPgClient(db.url, catalog);
    const text = await rolesync(["uninstall", "--dry-run"], db);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/would run: drop trigger role_membership_guard on public\.role_membership/);
    expect(text.stdout).toMatch(/kept: the key rolesync_role_membership_key/);
    expect(text.stdout).toMatch(/dry run: \d+ statement\(s\) would run\. Nothing was changed\./);
    const json = await rolesync(["uninstall", "--dry-run", "--json"], db);
    const out = JSON.parse(json.stdout.trim().split("\n").pop()!);
    expect(out.dryRun).toBe(true);
    expect(out.steps.length).toBeGreaterThan(10);
    expect(out.kept.length).toBeGreaterThan(0);
    expect(changed(before, await withPgClient(db.url, catalog))).toEqual([]);
  });

  test("`rolesync uninstall`, then `--drop-archive`: the archive and schema rolesync go only when asked", async () => {
    const db = await alephDatabase("4.0", { dirty: true });
    await migrate(db);
    const run = await rolesync(["uninstall"], db);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/→ drop index concurrently if exists public\.role_membership_group_id_member_id_idx/);
    expect(run.stdout).toMatch(/kept: the archive rolesync\.role_membership_removed \(6 rows\)/);
    expect(run.stdout).toMatch(/uninstalled in [\d.]+ s/);
    const drop = await rolesync(["uninstall", "--drop-archive"], db);
    expect(drop.code, drop.stderr).toBe(0);
    expect(drop.stdout).toMatch(/→ drop table rolesync\.role_membership_removed/);
    await withPgClient(db.url, async (c) => {
      const { rows } = await c.query("select to_regnamespace('rolesync') is null as gone");
      expect(rows[0].gone).toBe(true);
      expect((await keys(c)).unique).toEqual([ROLESYNC_KEY]);
    });
    const check = await rolesync(["check"], db);
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/rolesync is not installed in this database/);
  });

  test("the psql script: a dry run changes nothing; then it leaves what the CLI leaves, and again does nothing more", async () => {
    const viaCli = await alephDatabase("4.0", { dirty: true });
    const viaPsql = await alephDatabase("4.0", { dirty: true });
    for (const db of [viaCli, viaPsql]) await migrate(db);
    const before = await withPgClient(viaPsql.url, catalog);
    const dry = await psql(viaPsql, ["-v", "dry_run=on", "-f", script]);
    expect(dry.code, dry.output).toBe(0);
    expect(dry.output).toMatch(/drop trigger role_membership_guard on public\.role_membership/);
    expect(dry.output).toMatch(/the key rolesync_role_membership_key/);
    expect(changed(before, await withPgClient(viaPsql.url, catalog))).toEqual([]);

    const real = await psql(viaPsql, ["-f", script]);
    expect(real.code, real.output).toBe(0);
    expect(real.output).toMatch(/rolesync: uninstalled/);
    await runUninstall({ databaseUrl: viaCli.url });
    const a = await withPgClient(viaCli.url, catalog);
    const b = await withPgClient(viaPsql.url, catalog);
    expect(changed(a, b).filter((n) => !/role_membership_removed/.test(n))).toEqual([]);

    const twice = await psql(viaPsql, ["-f", script]);
    expect(twice.code, twice.output).toBe(0);
    expect(changed(b, await withPgClient(viaPsql.url, catalog))).toEqual([]);

    const drop = await psql(viaPsql, ["-v", "drop_archive=on", "-f", script]);
    expect(drop.code, drop.output).toBe(0);
    await withPgClient(viaPsql.url, async (c) => {
      const { rows } = await c.query("select to_regnamespace('rolesync') is null as gone");
      expect(rows[0].gone).toBe(true);
    });
  });

  test("the psql script refuses psql -1, and stops on RS014 with nothing changed", async () => {
    const db = await alephDatabase("4.1+");
    await migrate(db);
    const one = await psql(db, ["-1", "-f", script]);
    expect(one.code).not.toBe(0);
    expect(one.output).toMatch(/ERROR: {2}rolesync-uninstall\.sql cannot run inside one transaction/);
    await withPgClient(db.url, async (c) => expect(await checkFailures(c)).toEqual([]));

    // An install interrupted before its key (000001-000005 only).
    const partialDb = await interruptedBeforeKey();
    const before = await withPgClient(partialDb.url, catalog);
    const refused = await psql(partialDb, ["-f", script]);
    expect(refused.code).not.toBe(0);
    expect(refused.output).toMatch(/ERROR: {2}role_membership has no key: uninstalling now would leave it without one/);
    expect(refused.output).toMatch(/HINT: {2}Nothing was changed\. Run `rolesync migrate` to finish adopting/);
    expect(changed(before, await withPgClient(partialDb.url, catalog))).toEqual([]);
  });
});

