/*
 * `rolesync sql`, the psql-only path: the script applies what `rolesync
 * migrate` applies, on a dirty Aleph database, with psql alone; a second run
 * changes nothing; afterwards the runner and the check see it applied.
 */
import { afterAll, expect, test } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type pg from "pg";
import { psqlScript } from "../src/psql.ts";
import { ADVISORY_LOCK, packageRoot, runMigrations, SUPPORTED_MAJORS_SQL } from "../src/migrate.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { pgEnv } from "../scripts/test/pgtap.ts";
import { alephPre41Dirty, DIRTY_ROWS, fingerprint } from "../scripts/server/fixtures.ts";
import { connect, createRoles, createTestDatabase, groupsOf, installRelease010, runNode, sync, withPgClient, type TestDatabase } from "./helpers.ts";

const databases: TestDatabase[] = [];
const dir = mkdtempSync(path.join(tmpdir(), "rolesync-psql-"));
afterAll(async () => {
  for (const db of databases) await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

const script = path.join(dir, "rolesync.sql");
/** How many committed migrations the package has: the script must apply each. */
const COMMITTED = readdirSync(path.join(packageRoot, "migrations", "committed")).filter((f) => /^\d{6}.*\.sql$/.test(f)).length;
writeFileSync(script, psqlScript({ version: "0.0.0-test", command: "rolesync sql (test)" }));

/** Runs psql as an operator would: the URL's parts in PG* variables, the script with -f. */
function psql(url: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("psql", ["-X", ...args], { env: { ...process.env, ...pgEnv(url) } });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, output }));
  });
}

async function dirtyAleph(): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  databases.push(db);
  await withPgClient(db.url, alephPre41Dirty);
  return db;
}

const applied = async (c: pg.Client) =>
  (await c.query<{ filename: string }>("select filename from rolesync.migrations order by filename")).rows.map(
    (r) => r.filename,
  );

test("the script carries the package version and the command that made it, and says how to apply it", () => {
  const text = psqlScript({ version: "9.9.9", command: "rolesync sql > rolesync.sql" });
  expect(text).toMatch(/^-- rolesync 9\.9\.9: every migration `rolesync migrate` applies, as one psql script\.\n-- Made by: rolesync sql > rolesync\.sql\n/);
  expect(text).toContain("psql -v ON_ERROR_STOP=1 -v app_role=");
  expect(text).toContain("Not with psql -1 (--single-transaction), which it refuses");
});

test("psql -v ON_ERROR_STOP=1 -f, twice, on a dirty pre-4.1 Aleph database: migrated, then nothing changes; the runner and the check agree", async () => {
  const db = await dirtyAleph();
  const first = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-v", `app_role=${APP_ROLE}`, "-f", script]);
  expect(first.code, first.output).toBe(0);
  expect(first.output).toMatch(/rolesync: 000001-schema\.sql[\s\S]*rolesync: 000012-aleph-life-cycle\.sql[\s\S]*rolesync: done/);
  // Quiet: no command tags, and none of the server's notices that read as if it created Aleph's tables.
  expect(first.output).not.toMatch(/already exists, skipping|does not exist, skipping/);
  expect(first.output).not.toMatch(/^(CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE|BEGIN|COMMIT|DO|SET)\b/m);
  const after = await withPgClient(db.url, async (c) => {
    const { rows } = await c.query<{ check_name: string; ok: boolean }>("select check_name, ok from public.role_membership_check()");
    expect(rows.filter((r) => !r.ok)).toEqual([]);
    const { rows: removed } = await c.query<{ n: number }>("select count(*)::int as n from rolesync.role_membership_removed");
    const { duplicates, triplicates, nullRows } = DIRTY_ROWS;
    expect(removed[0].n).toBe(duplicates + 2 * triplicates + nullRows);
    // The app role got the grants, from -v app_role.
    const { rows: grant } = await c.query(
      "select has_function_privilege($1, 'public.sync_role_memberships(integer, integer[], text)', 'execute') as ok",
      [APP_ROLE],
    );
    expect(grant[0].ok).toBe(true);
    expect((await applied(c)).length).toBe(COMMITTED);
    return fingerprint(c);
  });

  const second = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-v", `app_role=${APP_ROLE}`, "-f", script]);
  expect(second.code, second.output).toBe(0);
  expect(second.output).not.toMatch(/rolesync: 0000\d\d-/); // no migration ran again
  expect(await withPgClient(db.url, fingerprint)).toEqual(after);

  // `rolesync migrate` finds everything applied, and the sync works.
  expect((await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE })).executed).toEqual([]);
  await withPgClient(db.url, async (c) => {
    const { users, groups } = await createRoles(c, { users: 1, groups: 2 });
    expect(await sync(c, users[0], groups)).toEqual({ added: groups, removed: [] });
    expect(await groupsOf(c, users[0])).toEqual(groups);
  });
});

test("without -v app_role the connecting user gets the grants", async () => {
  const db = await dirtyAleph();
  const run = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-f", script]);
  expect(run.code, run.output).toBe(0);
  await withPgClient(db.url, async (c) => {
    const { rows } = await c.query(
      `select has_schema_privilege(current_user, 'rolesync', 'usage') as usage,
              has_function_privilege($1, 'public.sync_role_memberships(integer, integer[], text)', 'execute') as app`,
      [APP_ROLE],
    );
    expect(rows[0]).toEqual({ usage: true, app: false });
  });
});

test("psql -1 is refused before anything runs (25001, with the way round), and nothing is applied", async () => {
  const db = await dirtyAleph();
  const run = await psql(db.url, ["-1", "-f", script]);
  expect(run.code).not.toBe(0);
  expect(run.output).toMatch(/ERROR: {2}rolesync\.sql cannot run inside one transaction \(psql -1, --single-transaction\)/);
  expect(run.output).toMatch(/HINT: {2}CREATE INDEX CONCURRENTLY and VACUUM cannot run in a transaction block/);
  await withPgClient(db.url, async (c) => {
    const { rows } = await c.query("select to_regnamespace('graphile_migrate') as gm, to_regnamespace('rolesync') as schema");
    expect(rows[0]).toEqual({ gm: null, schema: null }); // not even the ledger
  });
});

test("a database rolesync 0.1.0 migrated: the script applies what came after, and nothing of 0.1.0 again", async () => {
  const db = await dirtyAleph();
  // 0.1.0's migrations (000001-000008), by 0.1.0's runner, graphile-migrate's migrate.
  const old = await installRelease010(db.url, APP_ROLE);
  expect(old.at(-1)).toBe("000008-sync-by-foreign-id.sql");
  const gm = async (c: pg.Client) => (await c.query("select * from graphile_migrate.migrations order by filename")).rows;
  const gmBefore = await withPgClient(db.url, gm);
  const run = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-v", `app_role=${APP_ROLE}`, "-f", script]);
  expect(run.code, run.output).toBe(0);
  expect(await withPgClient(db.url, gm)).toEqual(gmBefore); // adopted, not moved: graphile-migrate's ledger stays as it was
  expect(run.output).toMatch(/rolesync: 000009-sync-oauth-login\.sql[\s\S]*rolesync: 000012-aleph-life-cycle\.sql/);
  expect(run.output).not.toMatch(/rolesync: 00000[1-8]-/);
  await withPgClient(db.url, async (c) => {
    expect((await applied(c)).length).toBe(COMMITTED);
    const { rows } = await c.query("select count(*)::int as n from rolesync.role_membership_removed");
    const { duplicates, triplicates, nullRows } = DIRTY_ROWS;
    expect(rows[0].n).toBe(duplicates + 2 * triplicates + nullRows); // 0.1.0's archive, moved
  });
  expect((await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE })).executed).toEqual([]);
});

test("`rolesync sql` prints the script, headed with the package's version and the command", async () => {
  const { version } = JSON.parse(readFileSync(path.join(packageRoot, "package.json"), "utf8")) as { version: string };
  const run = await runNode(path.join(packageRoot, "dist", "bin.js"), ["sql"], { DATABASE_URL: undefined });
  expect(run.code, run.stderr).toBe(0);
  expect(run.stdout).toBe(psqlScript({ version, command: "rolesync sql" }));
  expect(run.stdout.split("\n").slice(0, 2)).toEqual([
    `-- rolesync ${version}: every migration \`rolesync migrate\` applies, as one psql script.`,
    "-- Made by: rolesync sql",
  ]);
});

test("beside another application's graphile-migrate ledger the script installs everything, and leaves that ledger alone", async () => {
  const db = await dirtyAleph();
  await withPgClient(db.url, (c) =>
    c.query(`create schema graphile_migrate;
      create table graphile_migrate.migrations (hash text primary key, previous_hash text references graphile_migrate.migrations,
                                                filename text not null, date timestamptz not null default now());
      insert into graphile_migrate.migrations (hash, filename) values ('sha1:host1', '000001.sql')`),
  );
  const run = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-v", `app_role=${APP_ROLE}`, "-f", script]);
  expect(run.code, run.output).toBe(0);
  await withPgClient(db.url, async (c) => {
    expect((await applied(c)).length).toBe(COMMITTED);
    const { rows } = await c.query("select filename, hash from graphile_migrate.migrations");
    expect(rows).toEqual([{ filename: "000001.sql", hash: "sha1:host1" }]);
  });
});

test("the script refuses a newer rolesync's ledger (RS013) before changing anything", async () => {
  const db = await dirtyAleph();
  await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });
  await withPgClient(db.url, (c) =>
    c.query(`insert into rolesync.migrations (filename, hash, previous_hash)
             select '000099.sql', 'sha1:from-the-future', hash from rolesync.migrations order by filename desc limit 1`),
  );
  const before = await withPgClient(db.url, fingerprint);
  const run = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-f", script]);
  expect(run.code).not.toBe(0);
  expect(run.output).toMatch(/ERROR: {2}this database was migrated by a newer rolesync: rolesync\.migrations holds 000099\.sql \(sha1:from-the-future\)/);
  expect(await withPgClient(db.url, fingerprint)).toEqual(before);
});

/** An unmigrated database as it was: no schema rolesync (nor its ledger), the same rows. */
const untouched = async (c: pg.Client) =>
  (await c.query(`select to_regnamespace('rolesync') as rolesync, to_regnamespace('graphile_migrate') as gm,
                         (select count(*)::int from public.role_membership) as rows,
                         (select count(*)::int from pg_index where indrelid = 'public.role_membership'::regclass) as indexes`)).rows[0];

test("beside a running `rolesync migrate` (its advisory lock held) the script stops at once with 55P03, and changes nothing", async () => {
  const db = await dirtyAleph();
  const other = await connect(db.url);
  try {
    await other.query("select pg_advisory_lock($1)", [ADVISORY_LOCK]);
    const before = await withPgClient(db.url, untouched);
    const run = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-f", script]);
    expect(run.code).not.toBe(0);
    expect(run.output).toMatch(/ERROR: {2}another rolesync migration \(rolesync migrate, or this script\) is running on this database/);
    expect(await withPgClient(db.url, untouched)).toEqual(before);
  } finally {
    await other.end();
  }
});

test("-v maintenance_work_mem that PostgreSQL does not take stops the script (22023) before anything changes", async () => {
  const db = await dirtyAleph();
  const before = await withPgClient(db.url, untouched);
  const run = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-v", "maintenance_work_mem=lots", "-f", script]);
  expect(run.code).not.toBe(0);
  expect(run.output).toMatch(/invalid value for parameter "maintenance_work_mem"/);
  expect(await withPgClient(db.url, untouched)).toEqual(before);
  const ok = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-v", "maintenance_work_mem=96MB", "-v", `app_role=${APP_ROLE}`, "-f", script]);
  expect(ok.code, ok.output).toBe(0);
});

test("on Aleph 4.0 (Alembic before 131674bde902) the script builds 000010's index and keys the table with it; elsewhere it records 000010 with nothing built", async () => {
  const aleph40 = await dirtyAleph();
  await withPgClient(aleph40.url, (c) =>
    c.query(`create table public.alembic_version (version_num varchar(32) not null primary key);
             insert into public.alembic_version values ('8adf50aadcb0')`),
  );
  const built = await psql(aleph40.url, ["-v", "ON_ERROR_STOP=1", "-v", `app_role=${APP_ROLE}`, "-f", script]);
  expect(built.code, built.output).toBe(0);
  expect(built.output).toMatch(/^rolesync: 000010-own-key-index\.sql$/m);
  const plain = await dirtyAleph();
  const skipped = await psql(plain.url, ["-v", "ON_ERROR_STOP=1", "-v", `app_role=${APP_ROLE}`, "-f", script]);
  expect(skipped.code, skipped.output).toBe(0);
  expect(skipped.output).toMatch(/^rolesync: 000010-own-key-index\.sql: nothing to do, role_membership_pkey keys this table to stay/m);
  const keys = (c: pg.Client) =>
    c.query(`select conname, contype from pg_constraint where conrelid = 'public.role_membership'::regclass and contype in ('p', 'u')`)
      .then((r) => r.rows);
  expect(await withPgClient(aleph40.url, keys)).toEqual([{ conname: "rolesync_role_membership_key", contype: "u" }]);
  // Aleph's 4.1 upgrade adds its key; the script, run again, says what its hook did (its NOTICE is shown).
  await withPgClient(aleph40.url, (c) =>
    c.query(`alter table public.role_membership add constraint role_membership_pkey primary key (member_id, group_id);
             update public.alembic_version set version_num = '131674bde902'`),
  );
  const again = await psql(aleph40.url, ["-v", "ON_ERROR_STOP=1", "-v", `app_role=${APP_ROLE}`, "-f", script]);
  expect(again.code, again.output).toBe(0);
  expect(again.output).toMatch(/^rolesync: hook hooks\/drop-redundant-key\.sql\n.*NOTICE: {2}dropping rolesync_role_membership_key: role_membership_pkey now keys role_membership$/m);
  expect(await withPgClient(aleph40.url, keys)).toEqual([{ conname: "role_membership_pkey", contype: "p" }]);
  for (const db of [aleph40, plain]) {
    expect((await withPgClient(db.url, applied)).length).toBe(COMMITTED); // recorded either way
  }
});

test("preconditions before anything changes: an application role that does not exist (42704), and Aleph's tables missing (RS012)", async () => {
  const db = await dirtyAleph();
  const before = await withPgClient(db.url, untouched);
  const run = await psql(db.url, ["-v", "ON_ERROR_STOP=1", "-v", "app_role=rolesync_nobody_here", "-f", script]);
  expect(run.code).not.toBe(0);
  expect(run.output).toMatch(/ERROR: {2}the application role rolesync_nobody_here does not exist/);
  expect(run.output).toMatch(/HINT: {2}Nothing was changed\. Create it \(CREATE ROLE \.\.\.\), or name the role your application connects as: -v app_role=<role>\./);
  expect(await withPgClient(db.url, untouched)).toEqual(before);
  await withPgClient(db.url, async (c) => {
    const { rows } = await c.query("select to_regnamespace('rolesync') as schema");
    expect(rows[0].schema).toBeNull(); // not even the ledger's schema
  });

  const empty = await createTestDatabase({ empty: true });
  databases.push(empty);
  const bare = await psql(empty.url, ["-v", "ON_ERROR_STOP=1", "-f", script]);
  expect(bare.code).not.toBe(0);
  expect(bare.output).toMatch(/ERROR: {2}Aleph's tables are missing/);
  await withPgClient(empty.url, async (c) => {
    const { rows } = await c.query("select to_regnamespace('rolesync') as schema, to_regclass('public.role') as role");
    expect(rows[0]).toEqual({ schema: null, role: null });
  });
});

test("an unsupported server major stops the script and the runner (0A000) before anything changes; the check comes first", async () => {
  const text = psqlScript({ version: "0.0.0-test", command: "test" });
  // The check sits before the first statement that changes anything.
  expect(text.indexOf(SUPPORTED_MAJORS_SQL)).toBeGreaterThan(0);
  expect(text.indexOf(SUPPORTED_MAJORS_SQL)).toBeLessThan(text.search(/^(create|begin|insert|alter|set application_name)/m));
  // Its refusal, on this server, with the range moved past it.
  const moved = SUPPORTED_MAJORS_SQL.replace(/between \d+ and \d+/, "between 90 and 99");
  const err = await withPgClient((await dirtyAleph()).url, (c) => c.query(moved)).catch((e) => e);
  expect(err.code).toBe("0A000");
  expect(err.message).toMatch(/^rolesync supports PostgreSQL 10 to 18; this server is PostgreSQL \d+/);
  expect(err.hint).toMatch(/^Nothing was changed\./);
});
