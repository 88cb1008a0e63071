/*
 * OpenAleph as a line of its own (000017, 000018), and the lock-first login
 * (sync_aleph_login) with several real connections:
 * - an OpenAleph database is keyed by rolesync's UNIQUE key and a validated
 *   NOT NULL check, its columns left nullable as OpenAleph's models declare
 *   them; check, status and uninstall say that no one else will key it;
 * - one that a build before 0.2.0 adopted (NOT NULL columns) is brought to that shape online;
 * - migrations/conditions/alembic-line.sql and rolesync.alembic_line() agree
 *   on every state;
 * - one user's logins wait for each other from the first statement on;
 *   different users' never do; concurrent first logins of one user, with
 *   OAUTH_MIGRATE_SUB and the callback's own write to role afterwards, all
 *   succeed without a deadlock.
 */
import { afterAll, describe, expect, test } from "vitest";
import path from "node:path";
import type pg from "pg";
import { packageRoot, runMigrations } from "../src/migrate.ts";
import { alembicLine, runUninstall } from "../src/uninstall.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { alephDatabase as makeAlephDatabase, keys, ROLESYNC_KEY, type Release } from "./aleph-fixtures.ts";
import { backendPid, connect, runNode, serverMajor, waitUntilBlocked, withPgClient, type TestDatabase } from "./helpers.ts";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";

const databases: TestDatabase[] = [];
const dir = mkdtempSync(path.join(tmpdir(), "rolesync-openaleph-"));
afterAll(async () => {
  for (const db of databases) await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function alephDatabase(release: Release, opts: { dirty?: boolean } = {}): Promise<TestDatabase> {
  const db = await makeAlephDatabase(release, opts);
  databases.push(db);
  return db;
}

const migrate = (db: TestDatabase) => runMigrations({ databaseUrl: db.url, appRole: APP_ROLE });

async function shape(c: pg.Client) {
  const { rows } = await c.query<{ nullable: boolean; check: boolean | null }>(
    `select (select bool_and(not attnotnull) from pg_attribute
              where attrelid = 'public.role_membership'::regclass and attname in ('group_id', 'member_id')) as nullable,
            (select convalidated from pg_constraint
              where conrelid = 'public.role_membership'::regclass and conname = 'role_membership_not_null') as check`,
  );
  return { unique: (await keys(c)).unique, ...rows[0] };
}

describe("an OpenAleph 5.3 database", () => {
  test("with duplicates and NULL rows: keyed by rolesync's unique key and a validated NOT NULL check, the columns left nullable; check and status say the key stays", async () => {
    const db = await alephDatabase("openaleph", { dirty: true });
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      expect(await shape(c)).toEqual({ unique: [ROLESYNC_KEY], nullable: true, check: true });
      expect((await c.query("select rolesync.alembic_line() as l, rolesync.aleph_adds_primary_key() as a")).rows[0]).toEqual({
        l: "openaleph",
        a: false,
      });
      const { rows } = await c.query<{ check_name: string; ok: boolean; detail: string }>(
        "select check_name, ok, detail from public.role_membership_check()",
      );
      expect(rows.filter((r) => !r.ok)).toEqual([]);
      expect(rows.find((r) => r.check_name === "primary_key")?.detail).toMatch(/OpenAleph's Alembic adds no key of its own: this one stays/);
      // The check keeps NULL rows out, the columns being nullable.
      const err = await c.query("insert into public.role_membership (group_id, member_id) values (null, 1)").catch((e) => e);
      expect(err.code).toBe("23514");
    });
    const status = await runNode(path.join(packageRoot, "dist", "bin.js"), ["status"], { DATABASE_URL: db.url });
    expect(status.stdout).toMatch(/key rolesync_role_membership_key \(unique; OpenAleph's Alembic adds no key of its own, so it stays\)/);
    // Running again changes nothing.
    expect((await migrate(db)).executed).toEqual([]);
    await withPgClient(db.url, async (c) => expect(await shape(c)).toEqual({ unique: [ROLESYNC_KEY], nullable: true, check: true }));
  });

  test("one that a build before 0.2.0 adopted (NOT NULL columns, read as a pre-4.1 Aleph) is brought to that shape by 000017 and 000018", async () => {
    const db = await alephDatabase("openaleph", { dirty: true });
    const upTo16 = mkdtempSync(path.join(dir, "to16-"));
    cpSync(path.join(packageRoot, "migrations"), upTo16, { recursive: true, filter: (src) => !/committed\/0000(1[7-9]|[2-9]\d)/.test(src) });
    await runMigrations({ databaseUrl: db.url, appRole: APP_ROLE, migrationsFolder: upTo16 });
    const major = await withPgClient(db.url, serverMajor);
    await withPgClient(db.url, async (c) =>
      // 12+: 000007 made the columns NOT NULL; 10 and 11 never did (their compat migrations).
      expect(await shape(c)).toEqual({ unique: [ROLESYNC_KEY], nullable: major < 12, check: major < 12 ? true : null }),
    );
    const result = await migrate(db);
    expect(result.executed).toEqual(["000017-aleph-login.sql", "000018-validate-not-null-check.sql"]);
    await withPgClient(db.url, async (c) => expect(await shape(c)).toEqual({ unique: [ROLESYNC_KEY], nullable: true, check: true }));
  });

  test("uninstall keeps rolesync's key and check, and says why", async () => {
    const db = await alephDatabase("openaleph", { dirty: true });
    await migrate(db);
    const result = await runUninstall({ databaseUrl: db.url });
    expect(result.kept.map((k) => k.why).join("\n")).toMatch(
      /the key rolesync_role_membership_key \(UNIQUE \(member_id, group_id\)\) and the check role_membership_not_null: OpenAleph's Alembic adds no key of its own/,
    );
    await withPgClient(db.url, async (c) => expect(await shape(c)).toEqual({ unique: [ROLESYNC_KEY], nullable: true, check: true }));
  });
});

describe("rolesync.alembic_line() and migrations/conditions/alembic-line.sql", () => {
  test("agree on every state", async () => {
    const db = await alephDatabase("4.1+");
    await migrate(db);
    await withPgClient(db.url, async (c) => {
      const both = async () => [(await c.query("select rolesync.alembic_line() as l")).rows[0].l, await alembicLine(c)];
      const cases: [string, string | null, boolean][] = [
        ["aleph-4.1", "31e24765dee3", true],
        ["aleph-4.1", "8adf50aadcb0", true], // api_key_digest says 4.1 whatever the revision
        ["aleph-before-4.1", "8adf50aadcb0", false],
        ["aleph-before-4.1", "c52a1f469ac7", false],
        ["aleph-before-4.1", "af9b37868cf3", false],
        ["aleph-4.1", "131674bde902", false],
        ["openaleph", "575ded9400fd", false],
        ["openaleph", "e003034f4af8", false],
        ["unknown", "0123456789ab", false],
        ["none", null, false],
      ];
      await c.query("begin");
      for (const [line, revision, digest] of cases) {
        await c.query("savepoint s");
        if (!digest) await c.query("alter table public.role drop column api_key_digest");
        await c.query("delete from public.alembic_version");
        if (revision) await c.query("insert into public.alembic_version values ($1)", [revision]);
        expect(await both(), `${revision}${digest ? " with api_key_digest" : ""}`).toEqual([line, line]);
        await c.query("rollback to savepoint s");
      }
      await c.query("drop table public.alembic_version");
      expect(await both()).toEqual(["none", "none"]);
      await c.query("rollback");
    });
  });
});

/** One login as the callback runs it: the call, then the callback's own write to role, then the commit. */
async function login(c: pg.Client, foreignId: string, email: string, groups: string[]) {
  await c.query("begin");
  try {
    const { rows } = await c.query<{ member_id: number }>(
      "select member_id from sync_aleph_login($1, 'Name', $2, $3, migrate_sub => true)",
      [foreignId, email, groups],
    );
    await c.query("update public.role set last_login_at = now() at time zone 'utc' where id = $1", [rows[0].member_id]);
    await c.query("commit");
    return rows[0].member_id;
  } catch (e) {
    await c.query("rollback");
    throw e;
  }
}

describe("sync_aleph_login, lock first, on several connections", () => {
  test("a second login of the same user waits at the foreign-id lock; another user's does not wait at all", async () => {
    const db = await alephDatabase("4.1+");
    await migrate(db);
    const [a, b, other, observer] = await Promise.all([connect(db.url), connect(db.url), connect(db.url), connect(db.url)]);
    try {
      await observer.query("select sync_aleph_login('oidc:seed', 'Seed', null, array['group:x'])");
      await a.query("begin");
      await a.query("select sync_aleph_login('oidc:same', 'S', 'same@example.org', array['group:x'])");
      // A different user in the same group, while the first login holds its locks: done at once.
      // (Two first logins naming the same NEW group do wait: the second's insert waits for the first's commit.)
      const started = Date.now();
      await login(other, "oidc:other", "other@example.org", ["group:x"]);
      expect(Date.now() - started).toBeLessThan(2000);
      // The same user: waits, on the advisory lock, before it reads or writes anything.
      const bPid = await backendPid(b);
      const second = login(b, "oidc:same", "same@example.org", ["group:y"]);
      expect(await waitUntilBlocked(observer, bPid)).toBe("Lock:advisory");
      const { rows } = await observer.query(
        "select count(*)::int as n from pg_locks where pid = $1 and locktype = 'relation' and relation = 'public.role'::regclass",
        [bPid],
      );
      expect(rows[0].n).toBe(0); // it has not even read role yet
      await a.query("commit");
      await second;
      const { rows: g } = await observer.query(
        "select array_agg(g.foreign_id order by g.foreign_id) as groups from role_membership m join role u on u.id = m.member_id join role g on g.id = m.group_id where u.foreign_id = 'oidc:same'",
      );
      expect(g[0].groups).toEqual(["group:y"]); // the last to commit wins
    } finally {
      for (const c of [a, b, other, observer]) await c.end();
    }
  });

  test("16 concurrent first logins of one new user, OAUTH_MIGRATE_SUB on, each with the callback's write to role after the call: all succeed, one user, no deadlock", async () => {
    const db = await alephDatabase("4.1+");
    await migrate(db);
    const clients = await Promise.all(Array.from({ length: 16 }, () => connect(db.url)));
    try {
      for (let round = 0; round < 5; round++) {
        const fid = `oidc:new-${round}`;
        const ids = await Promise.all(clients.map((c, i) => login(c, fid, `new-${round}@example.org`, i % 2 ? ["group:a"] : ["group:a", "group:b"])));
        expect(new Set(ids).size).toBe(1);
      }
      await withPgClient(db.url, async (c) => {
        const { rows } = await c.query("select count(*)::int as n from role where foreign_id like 'oidc:new-%'");
        expect(rows[0].n).toBe(5);
        const { rows: d } = await c.query("select count(*)::int as n from role_membership_duplicates");
        expect(d[0].n).toBe(0);
      });
    } finally {
      for (const c of clients) await c.end();
    }
  });
});
