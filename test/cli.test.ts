/*
 * The `rolesync` command, run as a real subprocess (the built dist/bin.js):
 * every command, its --help, its exit codes and its --json output.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import net from "node:net";
import { spawn } from "node:child_process";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { packageRoot } from "../src/migrate.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { alephPre41, alephPre41Dirty, DIRTY_ROWS } from "../scripts/server/fixtures.ts";
import { backendPid, connect, createRoles, createTestDatabase, installRelease010, runNode, serverMajor, withPgClient, type TestDatabase } from "./helpers.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function rolesync(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return runNode(path.join(packageRoot, "dist", "bin.js"), args, { DATABASE_URL: undefined, ROLESYNC_APP_ROLE: APP_ROLE, ...env });
}

const json = (run: Run) => JSON.parse(run.stdout.trim().split("\n").pop()!);

/** A run and how long it took, in ms. */
async function timed(args: string[], env: Record<string, string | undefined> = {}): Promise<Run & { ms: number }> {
  const started = Date.now();
  const run = await rolesync(args, env);
  return { ...run, ms: Date.now() - started };
}

const NOT_INSTALLED = "rolesync is not installed in this database: run `rolesync migrate`";

let dirty: TestDatabase;
let migrated: TestDatabase;
const { duplicates, triplicates, nullRows } = DIRTY_ROWS;
const surplus = duplicates + 2 * triplicates;

beforeAll(async () => {
  dirty = await createTestDatabase({ empty: true });
  await withPgClient(dirty.url, alephPre41Dirty);
  migrated = await createTestDatabase();
});
afterAll(async () => {
  await dirty?.drop();
  await migrated?.drop();
});

describe("help and usage", () => {
  test.each(["migrate", "check", "dedupe", "sync", "status"])("`%s --help` explains the command and exits 0", async (cmd) => {
    const run = await rolesync([cmd, "--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Usage: rolesync ${cmd}`);
  });

  test("`--help` lists the commands and the exit codes", async () => {
    const run = await rolesync(["--help"]);
    expect(run.code).toBe(0);
    for (const cmd of ["migrate", "check", "dedupe", "sync", "status"]) expect(run.stdout).toContain(cmd);
    expect(run.stdout).toMatch(/Exit codes: 0 ok, 1 check found a problem, 2 usage error/);
    expect(run.stdout).toMatch(/4 database unreachable \(a connect timeout too\), 5 rolesync not installed in the database/);
    expect(run.stdout).toMatch(/--connect-timeout <seconds>\s+give up connecting after this long, 0 for never \(default: \$ROLESYNC_CONNECT_TIMEOUT, else 10\)/);
    expect(run.stdout).toMatch(/--statement-timeout <seconds>\s+status, check and dedupe --dry-run: cancel a statement after this long/);
    expect(run.stdout).toMatch(/\(default: \$ROLESYNC_STATEMENT_TIMEOUT, else 60\)/);
  });

  test("`migrate --help` documents --create-aleph-schema and the refusal without Aleph's tables", async () => {
    const run = await rolesync(["migrate", "--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/--create-aleph-schema\s+standalone database without Aleph/);
    expect(run.stdout).toMatch(/refused \(RS012\)/);
  });

  test("no database: exit 2 and how to give one", async () => {
    const run = await rolesync(["status"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/set DATABASE_URL or pass --database-url/);
  });

  test("an unknown command or option: exit 2", async () => {
    expect((await rolesync(["frobnicate"])).code).toBe(2);
    expect((await rolesync(["check", "--frobnicate"])).code).toBe(2);
  });

  test("`npm run migrate --app-role x` (no `--`): npm keeps the option; exit 2 before connecting, with the line to run", async () => {
    // Without npm's own variables from the `npm test` running this file.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
    const npm = (args: string[]) =>
      new Promise<Run>((resolve, reject) => {
        const child = spawn("npm", ["run", "--silent", ...args], {
          cwd: packageRoot,
          env: { ...env, DATABASE_URL: "postgres://postgres@127.0.0.1:1/nowhere" },
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
      });
    for (const [args, line] of [
      [["migrate", "--app-role", "aleph"], "npm run migrate -- --app-role aleph"],
      [["migrate", "--app-role=aleph", "--lock-retries=3"], "npm run migrate -- --app-role aleph --lock-retries 3"],
      [["migrate", "--create-aleph-schema"], "npm run migrate -- --create-aleph-schema"],
    ] as const) {
      const run = await npm([...args]);
      expect(run.code, run.stdout + run.stderr).toBe(2);
      expect(run.stderr).toMatch(/^rolesync: npm kept --[a-z-]+(, --[a-z-]+)* for itself: rolesync never saw (it|them)$/m);
      expect(run.stderr).toContain(`hint: npm passes on only what comes after \`--\`: run \`${line}\`.`);
      expect(run.stderr).not.toMatch(/ECONNREFUSED|cannot reach/); // stopped before connecting
    }
  });

  test("an unreachable server: exit 4, with a hint; --json reports it on stdout", async () => {
    const run = await rolesync(["--json", "status"], { DATABASE_URL: "postgres://postgres@127.0.0.1:1/nowhere" });
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/cannot reach|ECONNREFUSED/);
    expect(json(run)).toMatchObject({ error: { exitCode: 4 } });
  });
});

describe("on a dirty pre-4.1 Aleph database", () => {
  test("check: exit 1, not installed, and how dirty the table is", async () => {
    const run = await rolesync(["--json", "check"], { DATABASE_URL: dirty.url });
    expect(run.code).toBe(1);
    const out = json(run);
    expect(out.ok).toBe(false);
    expect(out.checks).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ check_name: "installed", ok: false, detail: NOT_INSTALLED }),
        expect.objectContaining({ check_name: "duplicates", ok: false, count: surplus }),
        expect.objectContaining({ check_name: "null_rows", ok: false, count: nullRows }),
      ]),
    );
  });

  test("dedupe --dry-run counts what would go and changes nothing", async () => {
    const count = () => withPgClient(dirty.url, async (c) => (await c.query("select count(*)::int as n from role_membership")).rows[0].n);
    const before = await count();
    const run = await rolesync(["--json", "dedupe", "--dry-run"], { DATABASE_URL: dirty.url });
    expect(run.code).toBe(0);
    expect(json(run)).toMatchObject({
      dryRun: true,
      duplicatedPairs: duplicates + triplicates,
      surplusCopies: surplus,
      nullRows,
      wouldRemove: surplus + nullRows,
    });
    expect(await count()).toBe(before);
    const human = await rolesync(["dedupe", "--dry-run"], { DATABASE_URL: dirty.url });
    expect(human.stdout).toMatch(new RegExp(`would remove ${surplus + nullRows} row\\(s\\).*Nothing was changed`));
  });

  test("dedupe without the migrations: exit 5, not installed, and a hint to migrate", async () => {
    const run = await rolesync(["dedupe"], { DATABASE_URL: dirty.url });
    expect(run.code).toBe(5);
    expect(run.stderr).toBe(
      `${NOT_INSTALLED}\nhint: public.dedupe_role_memberships() is missing. \`rolesync migrate\` installs the guard and dedupes, ` +
        "in that order; `rolesync dedupe --dry-run` counts before.\n",
    );
    const refused = await rolesync(["--json", "dedupe"], { DATABASE_URL: dirty.url });
    expect(refused.code).toBe(5);
    expect(json(refused)).toEqual({
      error: { exitCode: 5, sqlstate: null, message: NOT_INSTALLED, hint: expect.stringContaining("dedupe_role_memberships() is missing") },
    });
  });

  test("sync without the migrations: exit 5, not installed (no raw 42883 and its type-cast hint)", async () => {
    const run = await rolesync(["sync", "1", "2"], { DATABASE_URL: dirty.url });
    expect(run.code).toBe(5);
    expect(run.stderr).toBe(
      `${NOT_INSTALLED}\nhint: public.sync_role_memberships() is missing; \`rolesync status\` lists the pending migrations.\n`,
    );
    expect(run.stderr).not.toMatch(/42883|explicit type casts/);
    expect(json(await rolesync(["--json", "sync", "1", "--none"], { DATABASE_URL: dirty.url }))).toMatchObject({
      error: { exitCode: 5, sqlstate: null, message: NOT_INSTALLED },
    });
  });

  test("status before migrating: exit 0, not installed, the table and no key", async () => {
    const run = await rolesync(["--json", "status"], { DATABASE_URL: dirty.url });
    expect(run.code, run.stderr).toBe(0);
    expect(json(run)).toMatchObject({ installed: false, migrations: { applied: 0 }, roleMembership: { exists: true, key: null } });
    const human = await rolesync(["status"], { DATABASE_URL: dirty.url });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(NOT_INSTALLED);
    expect(human.stdout).toMatch(/key NONE \(run `rolesync migrate`\), guard trigger no/);
    // A small table is counted, analyzed or not: never "~0 rows".
    const n = await withPgClient(dirty.url, async (c) => (await c.query("select count(*)::int as n from role_membership")).rows[0].n);
    expect(json(run).roleMembership).toMatchObject({ rows: n, rowsExact: true });
    expect(human.stdout).toMatch(new RegExp(`^role_membership: ${n} rows, \\S+ \\S+ with indexes`, "m"));
  });

  test("status on a table of more than 8 MB: the planner's estimate, said as such (and before any ANALYZE, that there is none)", async () => {
    const big = await createTestDatabase({ empty: true });
    try {
      await withPgClient(big.url, async (c) => {
        await alephPre41(c, { users: 700, groups: 500 });
        await c.query("alter table role_membership set (autovacuum_enabled = off)");
        await c.query(`insert into role_membership (group_id, member_id)
                       select g.id, u.id from role u join role g on g.type = 'group' where u.type = 'user'`);
      });
      const before = json(await rolesync(["--json", "status"], { DATABASE_URL: big.url })).roleMembership;
      expect(before.rowsExact).toBe(false);
      // Never analyzed (autovacuum is off for it): no estimate yet, and status says how to get one.
      expect(before.rows).toBeNull();
      expect((await rolesync(["status"], { DATABASE_URL: big.url })).stdout).toMatch(
        /^role_membership: rows not estimated yet \(ANALYZE role_membership gives an estimate\), /m,
      );
      await withPgClient(big.url, (c) => c.query("analyze role_membership"));
      const after = json(await rolesync(["--json", "status"], { DATABASE_URL: big.url })).roleMembership;
      expect(after).toMatchObject({ rowsExact: false, rows: expect.any(Number) });
      expect(Math.abs(after.rows - 700 * 503) / (700 * 503)).toBeLessThan(0.1);
      expect((await rolesync(["status"], { DATABASE_URL: big.url })).stdout).toMatch(/^role_membership: ~\d+ rows \(the planner's estimate\), /m);
    } finally {
      await big.drop();
    }
  });

  test("migrate: each migration shown; --json lists them; a second run applies none", async () => {
    const first = await rolesync(["--json", "migrate"], { DATABASE_URL: dirty.url });
    expect(first.code).toBe(0);
    expect(first.stderr).toContain("→ 000001-schema.sql");
    expect(json(first).executed).toContain("000005-dedupe.sql");
    const second = await rolesync(["migrate"], { DATABASE_URL: dirty.url });
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/already up to date/);
  });

  test("check after migrating: exit 0, all good", async () => {
    const run = await rolesync(["check"], { DATABASE_URL: dirty.url });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/all good/);
    const out = json(await rolesync(["--json", "check"], { DATABASE_URL: dirty.url }));
    expect(out.ok).toBe(true);
    expect(out.checks.map((c: { check_name: string }) => c.check_name)).toEqual([
      "primary_key",
      "redundant_key",
      "duplicates",
      "null_rows",
      "invalid_indexes",
      "soft_deleted_members",
      "soft_deleted_groups",
      "migrations",
      "guard_trigger",
      "functions",
      "app_role_privileges",
      "group_index",
    ]);
  });

  test("status: everything applied, the key, the archive (in schema rolesync)", async () => {
    const run = await rolesync(["--json", "status"], { DATABASE_URL: dirty.url });
    expect(run.code, run.stderr).toBe(0);
    const out = json(run);
    expect(out.installed).toBe(true);
    expect(out.migrations.pending).toEqual([]);
    expect(out.migrations.applied).toBe(out.migrations.available);
    // No Alembic ledger here: rolesync's key is the primary key, except on PostgreSQL 10 and 11,
    // where adding one would scan the table under ACCESS EXCLUSIVE (docs/aleph.md).
    const primary = (await withPgClient(dirty.url, serverMajor)) >= 12;
    expect(out.roleMembership).toMatchObject({
      exists: true,
      primaryKey: primary,
      key: primary ? "role_membership_pkey" : "rolesync_role_membership_key",
      redundantKey: null,
      guardTrigger: true,
      archivedRows: surplus + nullRows,
      membersSynced: 0,
    });
    const human = await rolesync(["status"], { DATABASE_URL: dirty.url });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(
      primary
        ? /key role_membership_pkey \(primary key\), guard trigger yes/
        : /key rolesync_role_membership_key \(unique; no one else keys the table, so it stays\), guard trigger yes/,
    );
    expect(human.stdout).toContain(`archived by the dedupe: ${surplus + nullRows} row(s)`);
    expect(human.stdout).not.toContain("not installed");
  });
});

describe("on an empty database", () => {
  let empty: TestDatabase;
  beforeAll(async () => {
    empty = await createTestDatabase({ empty: true });
  });
  afterAll(async () => empty?.drop());

  test("status: exit 0, rolesync not installed, 0 migrations applied, no role_membership", async () => {
    const run = await rolesync(["--json", "status"], { DATABASE_URL: empty.url });
    expect(run.code, run.stderr).toBe(0);
    const out = json(run);
    expect(out.installed).toBe(false);
    expect(out.migrations).toMatchObject({ applied: 0, available: expect.any(Number) });
    expect(out.migrations.pending).toHaveLength(out.migrations.available);
    expect(out.roleMembership).toEqual({
      exists: false,
      rows: null,
      rowsExact: false,
      estimatedRows: null,
      size: null,
      primaryKey: false,
      key: null,
      redundantKey: null,
      guardTrigger: false,
      archivedRows: null,
      membersSynced: null,
    });
    const human = await rolesync(["status"], { DATABASE_URL: empty.url });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^migrations: 0 of \d+ applied; pending: 000001-schema\.sql/m);
    expect(human.stdout).toContain(NOT_INSTALLED);
    expect(human.stdout).toMatch(/role_membership: missing/);
    expect(human.stderr).toBe("");
  });

  test("check: exit 1, not installed, and that Aleph's tables are missing too", async () => {
    const run = await rolesync(["--json", "check"], { DATABASE_URL: empty.url });
    expect(run.code, run.stderr).toBe(1);
    expect(json(run)).toEqual({
      ok: false,
      checks: [
        {
          check_name: "installed",
          ok: false,
          count: null,
          detail: NOT_INSTALLED,
          hint: expect.stringMatching(/^Aleph's tables are missing too .*`aleph upgrade` first, or `rolesync migrate --create-aleph-schema`/),
        },
      ],
    });
    const human = await rolesync(["check"], { DATABASE_URL: empty.url });
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/^FAIL\s+installed\s+rolesync is not installed in this database: run `rolesync migrate`$/m);
    expect(human.stdout).toMatch(/problems found \(exit 1\)/);
  });

  test.each(["dedupe --dry-run", "dedupe", "sync 1 2"])(
    "`%s`: exit 5, not installed, Aleph's tables missing too; no raw 42P01 or 42883",
    async (command) => {
      const args = command.split(" ");
      const run = await rolesync(args, { DATABASE_URL: empty.url });
      expect(run.code).toBe(5);
      expect(run.stderr).toBe(
        `${NOT_INSTALLED}\nhint: Aleph's tables are missing too (no public.role_membership): run \`aleph upgrade\` first, ` +
          "or `rolesync migrate --create-aleph-schema` for a standalone database.\n",
      );
      const refused = await rolesync(["--json", ...args], { DATABASE_URL: empty.url });
      expect(refused.code).toBe(5);
      expect(json(refused)).toMatchObject({ error: { exitCode: 5, sqlstate: null, message: NOT_INSTALLED } });
    },
  );

  test("migrate: exit 3, RS012 and the hint to install Aleph or opt in; nothing migrated", async () => {
    const run = await rolesync(["migrate"], { DATABASE_URL: empty.url });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain("ERROR RS012: Aleph's tables are missing");
    expect(run.stderr).toMatch(/^hint: Install Aleph's schema first \(`aleph upgrade`\).*`rolesync migrate --create-aleph-schema`/m);
    const refused = await rolesync(["--json", "migrate"], { DATABASE_URL: empty.url });
    expect(refused.code).toBe(3);
    expect(json(refused)).toMatchObject({
      error: { exitCode: 3, sqlstate: "RS012", hint: expect.stringContaining("--create-aleph-schema") },
    });
    const left = await withPgClient(empty.url, async (c) =>
      (await c.query(`select to_regclass('public.role') as role, to_regtype('public.role_type') as role_type,
                             to_regnamespace('rolesync') as rolesync`)).rows[0],
    );
    expect(left).toEqual({ role: null, role_type: null, rolesync: null }); // not even the ledger
  });

  test("migrate --create-aleph-schema: Aleph 4.1.6's tables, every migration, then check is all good", async () => {
    const run = await rolesync(["--json", "migrate", "--create-aleph-schema"], { DATABASE_URL: empty.url });
    expect(run.code, run.stderr).toBe(0);
    expect(json(run).executed).toContain("000001-schema.sql");
    const columns = await withPgClient(empty.url, async (c) =>
      (await c.query("select attname from pg_attribute where attrelid = 'public.role'::regclass and attnum > 0")).rows.map(
        (r) => r.attname,
      ),
    );
    expect(columns).toContain("last_login_at");
    expect(columns).not.toContain("notified_at");
    expect((await rolesync(["check"], { DATABASE_URL: empty.url })).code).toBe(0);
  });
});

describe("on a migrated database", () => {
  let member: number;
  let groups: number[];
  beforeAll(async () => {
    ({ member, groups } = await withPgClient(migrated.url, async (c) => {
      const { rows } = await c.query<{ id: number; type: string }>(
        `insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester)
         values ('cli:u', 'u', 'user', false, false, false, false), ('cli:g1', 'g1', 'group', false, false, false, false),
                ('cli:g2', 'g2', 'group', false, false, false, false), ('cli:g3', 'g3', 'group', false, false, false, false)
         returning id, type::text`,
      );
      return { member: rows[0].id, groups: rows.slice(1).map((r) => r.id) };
    }));
  });

  test("sync prints what changed; --json gives {added, removed}", async () => {
    const run = await rolesync(["sync", String(member), String(groups[0]), String(groups[1])], { DATABASE_URL: migrated.url });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`member ${member}: added [${groups[0]}, ${groups[1]}], removed []`);
    const again = await rolesync(["--json", "sync", String(member), String(groups[1]), String(groups[2])], {
      DATABASE_URL: migrated.url,
    });
    expect(json(again)).toEqual({ added: [groups[2]], removed: [groups[0]] });
  });

  test("sync --none removes every membership; no ids without --none is a usage error", async () => {
    expect((await rolesync(["sync", String(member)], { DATABASE_URL: migrated.url })).code).toBe(2);
    const run = await rolesync(["--json", "sync", String(member), "--none"], { DATABASE_URL: migrated.url });
    expect(json(run)).toEqual({ added: [], removed: [groups[1], groups[2]] });
  });

  test("sync refused by PostgreSQL: exit 3, the SQLSTATE and a one-line hint; --json too", async () => {
    const run = await rolesync(["sync", String(member), "999999"], { DATABASE_URL: migrated.url });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain("ERROR RS002: unknown or soft-deleted groups: 999999");
    expect(run.stderr).toMatch(/^hint: .+/m);
    const self = await rolesync(["--json", "sync", String(member), String(member)], { DATABASE_URL: migrated.url });
    expect(self.code).toBe(3);
    expect(json(self)).toMatchObject({ error: { sqlstate: "RS004", exitCode: 3 } });
  });

  test("sync with a malformed id: exit 2 before touching the database", async () => {
    const run = await rolesync(["sync", "12x", "3"], { DATABASE_URL: migrated.url });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/role-id must be an integer id/);
  });

  test("check finds memberships of soft-deleted roles and invalid indexes: exit 1 with hints", async () => {
    await withPgClient(migrated.url, async (c) => {
      await c.query("insert into role_membership (group_id, member_id) values ($1, $2)", [groups[0], member]);
      await c.query("update role set deleted_at = now() where id = $1", [groups[0]]);
      // A real INVALID index: a unique build that hits duplicate names.
      await c.query("insert into role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester) values ('cli:x', 'g1', 'group', false, false, false, false)");
      await c.query("create unique index concurrently role_name_unique on role (name)").catch(() => {});
    });
    const run = await rolesync(["--json", "check"], { DATABASE_URL: migrated.url });
    expect(run.code).toBe(1);
    const byName = Object.fromEntries(json(run).checks.map((c: { check_name: string }) => [c.check_name, c]));
    expect(byName.soft_deleted_groups).toMatchObject({ ok: false, count: 1 });
    expect(byName.invalid_indexes).toMatchObject({ ok: false, count: 1, detail: expect.stringContaining("role_name_unique") });
    expect(byName.primary_key.ok).toBe(true);
    const human = await rolesync(["check"], { DATABASE_URL: migrated.url });
    expect(human.stdout).toMatch(/FAIL\s+soft_deleted_groups/);
    expect(human.stdout).toMatch(/hint: Each member's next sync removes them/);
  });
});

describe("status names the constraint that keys role_membership", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  const status = async () => {
    const run = await rolesync(["--json", "status"], { DATABASE_URL: db.url });
    expect(run.code, run.stderr).toBe(0);
    const human = await rolesync(["status"], { DATABASE_URL: db.url });
    expect(human.code, human.stderr).toBe(0);
    return { out: json(run).roleMembership, human: human.stdout };
  };
  const alter = (sql: string) => withPgClient(db.url, (c) => c.query(sql));

  test("both keys at once (Aleph's 4.1 upgrade added its own since the last migrate): the primary key, and the other one named", async () => {
    await alter("alter table public.role_membership add constraint rolesync_role_membership_key unique (member_id, group_id)");
    const { out, human } = await status();
    expect(out).toMatchObject({ primaryKey: true, key: "role_membership_pkey", redundantKey: "rolesync_role_membership_key" });
    expect(human).toMatch(/key role_membership_pkey \(primary key\)/);
    expect(human).toMatch(/also keyed by rolesync_role_membership_key: .*the next `rolesync migrate` keeps the one Aleph's Alembic state calls for/);
  });

  test("rolesync's unique constraint alone: primaryKey false, key rolesync_role_membership_key; whether it stays depends on Aleph's Alembic line", async () => {
    await alter("alter table public.role_membership drop constraint role_membership_pkey");
    const { out, human } = await status();
    expect(out).toMatchObject({ primaryKey: false, key: "rolesync_role_membership_key", redundantKey: null });
    // This database has no Alembic ledger: no one else keys it.
    expect(human).toMatch(/key rolesync_role_membership_key \(unique; no one else keys the table, so it stays\), guard trigger yes/);
    await alter("create table public.alembic_version (version_num varchar(32) primary key); insert into public.alembic_version values ('8adf50aadcb0')");
    await alter("alter table public.role drop column api_key_digest");
    expect((await status()).human).toMatch(/key rolesync_role_membership_key \(unique, until Aleph's 4\.1 upgrade adds role_membership_pkey\)/);
    await alter("update public.alembic_version set version_num = '575ded9400fd'");
    expect((await status()).human).toMatch(/key rolesync_role_membership_key \(unique; OpenAleph's Alembic adds no key of its own, so it stays\)/);
    await alter("drop table public.alembic_version");
    expect((await rolesync(["--json", "status"], { DATABASE_URL: db.url })).stdout).toMatch(/"alembicLine":"none"/);
  });

  test("no key at all: key null, and the human output says to migrate", async () => {
    await alter("alter table public.role_membership drop constraint rolesync_role_membership_key");
    const { out, human } = await status();
    expect(out).toMatchObject({ primaryKey: false, key: null, redundantKey: null });
    expect(human).toMatch(/key NONE \(run `rolesync migrate`\)/);
  });

  test("rolesync's tables where 0.1.0 left them (public) are counted there; missing ones give null, not an error", async () => {
    await withPgClient(db.url, async (c) => {
      await c.query("insert into rolesync.role_membership_removed (group_id, member_id, reason) values (1, 2, 'duplicate')");
      await c.query("alter table rolesync.role_membership_removed set schema public");
      await c.query("drop table rolesync.role_membership_version");
    });
    const { out, human } = await status();
    expect(out).toMatchObject({ archivedRows: 1, membersSynced: null });
    expect(human).toContain("archived by the dedupe: 1 row(s)");
    expect(human).not.toContain("members changed by sync_role_memberships");
  });
});

describe("a malformed database URL: exit 2, what is wrong, never the password", () => {
  test.each([
    ["not-a-url", /--database-url is not a PostgreSQL URL: it is not a URL \(no scheme\)/],
    ["postgres://", /--database-url is not a PostgreSQL URL: it names no host \(for a Unix socket, give its directory: postgres:\/\/\/dbname\?host=/],
    ["http://x", /--database-url is not a PostgreSQL URL: its scheme is http:, not postgres: or postgresql:/],
    ["mysql://u:s3cret@db.example/app", /its scheme is mysql:, not postgres: or postgresql:/],
    ["postgres:s3cret@db.example/app", /postgres: must be followed by \/\//],
    ["postgres://u:s3cret@db.example:99999/app", /it cannot be parsed \(check the port/],
    ["postgres://u:s3cret@db.example:port/app", /it cannot be parsed/],
    ["postgresql://u:s3cret@/app", /it has a user but no host; for a Unix socket put the user in \?user=/],
    ["postgres://u:s3cret%zz@db.example/app", /holds a malformed %-escape/],
  ])("%s", async (url, problem) => {
    // Checked before any command connects: every command for the first, status for the others.
    for (const cmd of url === "not-a-url" ? [["status"], ["check"], ["dedupe"], ["sync", "1", "2"], ["migrate"]] : [["status"]]) {
      const run = await rolesync(["--database-url", url, ...cmd]);
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(problem);
      expect(run.stderr).toMatch(/^hint: Give it as postgres:\/\/user:password@host:5432\/dbname/m);
      expect(run.stderr + run.stdout).not.toContain("s3cret");
      expect(run.stderr).not.toMatch(/ENOTFOUND|getaddrinfo/);
    }
  });

  test("from DATABASE_URL, it says so; --json reports it on stdout", async () => {
    const run = await rolesync(["--json", "check"], { DATABASE_URL: "http://u:s3cret@x/db" });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^rolesync: DATABASE_URL is not a PostgreSQL URL: its scheme is http:/);
    expect(json(run)).toMatchObject({ error: { exitCode: 2, sqlstate: null, message: expect.stringContaining("DATABASE_URL") } });
    expect(run.stdout + run.stderr).not.toContain("s3cret");
  });

  test("a Unix socket directory in ?host= is accepted: a missing one is unreachable (exit 4), not a usage error", async () => {
    const run = await rolesync(["status"], { DATABASE_URL: "postgres:///app?host=/nonexistent-rolesync-socket-dir&user=u" });
    expect(run.code).toBe(4);
    expect(run.stderr).toContain("/nonexistent-rolesync-socket-dir/.s.PGSQL.");
  });
});

describe("timeouts", () => {
  /** A server that accepts every TCP connection and never answers. */
  let silent: net.Server;
  let silentUrl: string;
  const sockets = new Set<net.Socket>();
  beforeAll(async () => {
    silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    silentUrl = `postgres://u:s3cret@127.0.0.1:${(silent.address() as net.AddressInfo).port}/app`;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent?.close(resolve));
  });

  test.each(["status", "check", "dedupe --dry-run", "dedupe", "sync 1 2", "migrate"])(
    "`%s` on a server that never answers: exit 4 after --connect-timeout, with a hint",
    async (command) => {
      const run = await timed(["--connect-timeout", "0.5", ...command.split(" ")], { DATABASE_URL: silentUrl });
      expect(run.code, run.stderr).toBe(4);
      expect(run.stderr).toMatch(/^rolesync: no answer from 127\.0\.0\.1:\d+ within 0\.5 s \(connect timeout\)$/m);
      expect(run.stderr).toMatch(/^hint: Check the host and port .*--connect-timeout <seconds> or ROLESYNC_CONNECT_TIMEOUT \(0 = wait forever\)\.$/m);
      expect(run.stderr + run.stdout).not.toContain("s3cret");
    },
  );

  test("ROLESYNC_CONNECT_TIMEOUT sets it too; --json reports it on stdout", async () => {
    const run = await timed(["--json", "status"], { DATABASE_URL: silentUrl, ROLESYNC_CONNECT_TIMEOUT: "0.5" });
    expect(run.code).toBe(4);
    expect(json(run)).toEqual({
      error: { exitCode: 4, sqlstate: null, message: expect.stringMatching(/within 0\.5 s \(connect timeout\)$/), hint: expect.any(String) },
    });
  });

  test("the option wins over the variable", async () => {
    const run = await timed(["--connect-timeout", "0.5", "status"], { DATABASE_URL: silentUrl, ROLESYNC_CONNECT_TIMEOUT: "600" });
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/within 0\.5 s \(connect timeout\)$/m);
  });

  test("migrate --maintenance-work-mem that PostgreSQL does not take (or the variable): exit 3, 22023, nothing migrated", async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      await withPgClient(db.url, alephPre41Dirty);
      for (const [args, env] of [
        [["migrate", "--maintenance-work-mem", "lots"], {}],
        [["migrate"], { ROLESYNC_MAINTENANCE_WORK_MEM: "-5" }],
      ] as const) {
        const run = await rolesync([...args], { DATABASE_URL: db.url, ...env });
        expect(run.code, run.stderr).toBe(3);
        expect(run.stderr).toMatch(/ERROR 22023: .*maintenance_work_mem/);
        // The hint is about this setting, not the generic 22023 one (a list of names, rolesync.create_aleph_schema).
        expect(run.stderr).toMatch(/\nhint: Give maintenance_work_mem a size PostgreSQL accepts, such as 256MB or 1GB .* or "server" .*Nothing was changed\.\n/);
        expect(run.stderr).not.toMatch(/flat array|create_aleph_schema/);
      }
      const { rows } = await withPgClient(db.url, (c) => c.query("select to_regnamespace('rolesync') as rolesync"));
      expect(rows[0]).toEqual({ rolesync: null });
      const ok = await rolesync(["migrate", "--maintenance-work-mem", "128MB"], { DATABASE_URL: db.url });
      expect(ok.code, ok.stderr).toBe(0);
    } finally {
      await db.drop();
    }
  });

  test("PGOPTIONS reaches the migration's sessions, as libpq's does: a value the server refuses stops it before any change; 0 parallel maintenance workers (11+) migrates", async () => {
    const db = await createTestDatabase({ empty: true });
    try {
      await withPgClient(db.url, alephPre41Dirty);
      const major = await withPgClient(db.url, serverMajor);
      const refused = await rolesync(["migrate"], { DATABASE_URL: db.url, PGOPTIONS: "-c lock_timeout=-1" });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/-1 (ms )?is outside the valid range for parameter "lock_timeout"/);
      const { rows } = await withPgClient(db.url, (c) => c.query("select to_regnamespace('rolesync') as rolesync"));
      expect(rows[0]).toEqual({ rolesync: null });
      // PostgreSQL 10 has no parallel index builds, and no such setting.
      const options = major >= 11 ? "-c max_parallel_maintenance_workers=0" : "-c work_mem=8MB";
      const ok = await rolesync(["migrate"], { DATABASE_URL: db.url, PGOPTIONS: options });
      expect(ok.code, ok.stderr).toBe(0);
    } finally {
      await db.drop();
    }
  });

  test("a timeout that is not a number of seconds: exit 2", async () => {
    for (const [args, env, message] of [
      [["--connect-timeout", "soon", "status"], {}, /--connect-timeout must be a number of seconds \(0 for none\), not "soon"/],
      [["--statement-timeout", "-1", "status"], {}, /--statement-timeout must be a number of seconds/],
      [["status"], { ROLESYNC_STATEMENT_TIMEOUT: "1m" }, /ROLESYNC_STATEMENT_TIMEOUT must be a number of seconds \(0 for none\), not "1m"/],
    ] as const) {
      const run = await rolesync([...args], { DATABASE_URL: migrated.url, ...env });
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(message);
    }
  });

  describe("a statement waiting behind a lock", () => {
    // PostgreSQL's 57014 does not name the timeout, so the run's length tells
    // the 0.5 s given here from the 60 s default. The bound is half the
    // default, not a speed target: a loaded CI machine took 8.6 s for one run.
    const NOT_THE_DEFAULT_MS = 30_000;
    let locker: Awaited<ReturnType<typeof connect>>;
    let member: number;
    beforeAll(async () => {
      ({ users: [member] } = await withPgClient(migrated.url, (c) => createRoles(c, { users: 1 })));
      locker = await connect(migrated.url);
      await locker.query("begin");
      await locker.query("lock table public.role_membership in access exclusive mode");
    });
    afterAll(async () => {
      await locker?.query("rollback").catch(() => {});
      await locker?.end();
    });

    test.each(["status", "check", "dedupe --dry-run"])(
      "`%s` (read-only): exit 3, 57014, after --statement-timeout, with a hint",
      async (command) => {
        const run = await timed(["--statement-timeout", "0.5", ...command.split(" ")], { DATABASE_URL: migrated.url });
        expect(run.code, run.stderr).toBe(3);
        expect(run.ms).toBeLessThan(NOT_THE_DEFAULT_MS);
        expect(run.stderr).toMatch(/^rolesync: ERROR 57014: canceling statement due to statement timeout$/m);
        expect(run.stderr).toMatch(/^hint: A statement ran past the statement timeout .*--statement-timeout or ROLESYNC_STATEMENT_TIMEOUT, default 60 s, 0 = none\)/m);
      },
    );

    test("ROLESYNC_STATEMENT_TIMEOUT sets it too; --json gives the SQLSTATE", async () => {
      const run = await timed(["--json", "check"], { DATABASE_URL: migrated.url, ROLESYNC_STATEMENT_TIMEOUT: "0.5" });
      expect(run.code).toBe(3);
      expect(run.ms).toBeLessThan(NOT_THE_DEFAULT_MS);
      expect(json(run)).toMatchObject({ error: { exitCode: 3, sqlstate: "57014" } });
    });

    test("sync (a write) has no statement timeout: it waits for the lock, then succeeds", async () => {
      const pending = timed(["--json", "sync", String(member), "--none"], { DATABASE_URL: migrated.url, ROLESYNC_STATEMENT_TIMEOUT: "0.2" });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await locker.query("rollback");
      const run = await pending;
      expect(run.code, run.stderr).toBe(0);
      expect(run.ms).toBeGreaterThan(1000);
      expect(json(run)).toEqual({ added: [], removed: [] });
    });
  });
});

describe("a connection the server ends while it is idle (a restart, pg_terminate_backend)", () => {
  test("the next statement fails with the server's reason, 57P01, not an unhandled 'error' event that ends the process", async () => {
    const observer = await connect(migrated.url);
    try {
      const failure = await withPgClient(migrated.url, async (c) => {
        const pid = await backendPid(c);
        await observer.query("select pg_terminate_backend($1)", [pid]);
        // The backend sends its FATAL before it exits: once it is gone, the message has reached this socket.
        while ((await observer.query("select 1 from pg_catalog.pg_stat_activity where pid = $1", [pid])).rowCount) await sleep(20);
        await sleep(100);
        await c.query("select 1");
      }).then(
        () => null,
        (e: { code?: string; message?: string }) => e,
      );
      expect(failure).toMatchObject({ code: "57P01", message: "terminating connection due to administrator command" });
    } finally {
      await observer.end();
    }
  });
});

describe("a database rolesync 0.1.0 migrated (its ledger in graphile_migrate.migrations)", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
    await withPgClient(db.url, alephPre41Dirty);
    await installRelease010(db.url, APP_ROLE);
  });
  afterAll(async () => db?.drop());

  test("status counts 0.1.0's migrations as applied, and lists the rest as pending", async () => {
    const run = await rolesync(["--json", "status"], { DATABASE_URL: db.url });
    expect(run.code, run.stderr).toBe(0);
    const { migrations } = json(run);
    expect(migrations.applied).toBe(8);
    expect(migrations.pending[0]).toBe("000009-sync-oauth-login.sql");
    expect(migrations.applied + migrations.pending.length).toBe(migrations.available);
  });

  test("migrate adopts 0.1.0's rows, says so, applies the rest; graphile-migrate's ledger is left as it was", async () => {
    const gm = async () =>
      withPgClient(db.url, async (c) => (await c.query("select * from graphile_migrate.migrations order by filename")).rows);
    const before = await gm();
    const run = await rolesync(["migrate"], { DATABASE_URL: db.url });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^adopted 8 migration\(s\) from graphile_migrate\.migrations into rolesync\.migrations \(000001\.sql to 000008\.sql\)$/m);
    expect(run.stdout).toMatch(/^→ 000009-sync-oauth-login\.sql$/m);
    expect(run.stdout).not.toMatch(/^→ 00000[1-8]/m);
    expect(await gm()).toEqual(before);
    const status = json(await rolesync(["--json", "status"], { DATABASE_URL: db.url }));
    expect(status.migrations.pending).toEqual([]);
    const again = await rolesync(["migrate"], { DATABASE_URL: db.url });
    expect(again.stdout).not.toMatch(/adopted/);
    expect(again.stdout).toMatch(/already up to date/);
  });
});
