/*
 * Small helpers for the vitest files, named for what they give you.
 * Each test file works in its own database, cloned from the migrated template.
 */
import { inject } from "vitest";
import { spawn } from "node:child_process";
import pg from "pg";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { migrate as gmMigrate, Logger } from "graphile-migrate";
import { clearAllPools } from "graphile-migrate/dist/pgReal.js";
import { packageRoot } from "../src/migrate.ts";
import { withClient } from "../src/pg.ts";
import { createDatabase, dropDatabase, externalServer, uniqueName, type Server } from "../scripts/server/db.ts";

export function testServer(): Server {
  return externalServer(inject("adminUrl"));
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** A database of this file's own: a clone of the migrated template, or empty. */
export async function createTestDatabase(opts: { empty?: boolean } = {}): Promise<TestDatabase> {
  const server = testServer();
  const name = uniqueName(opts.empty ? "rolesync_empty" : "rolesync_test");
  const url = await createDatabase(server, name, opts.empty ? undefined : inject("template"));
  return { name, url, drop: () => dropDatabase(server, name) };
}

export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

export { withClient as withPgClient } from "../src/pg.ts";

/**
 * Runs a Node script (with tsx, for .ts) in its own process group, as a
 * terminal's foreground job, and presses Ctrl-C (SIGINT to the whole group)
 * once `ready` says so; collects its output and exit code.
 */
export async function interruptWhen(
  script: string,
  args: string[],
  env: Record<string, string | undefined>,
  ready: (pid: number, output: string) => Promise<boolean>,
  timeoutMs = 60_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string; pid: number }> {
  const child = spawn(process.execPath, [...(script.endsWith(".ts") ? ["--import", "tsx"] : []), script, ...args], {
    env: { ...process.env, ...env },
    detached: true,
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  let ended = false;
  void closed.then(() => (ended = true));
  const pid = child.pid!;
  for (const deadline = Date.now() + timeoutMs; !(await ready(pid, output)); ) {
    if (ended) throw new Error(`${path.basename(script)} ended before it was ready to be interrupted:\n${output}`);
    if (Date.now() > deadline) {
      process.kill(-pid, "SIGKILL");
      throw new Error(`${path.basename(script)} was not ready to be interrupted within ${timeoutMs} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  process.kill(-pid, "SIGINT");
  return { ...(await closed), output, pid };
}

/**
 * The databases the process `pid` made on the test server through
 * uniqueName(prefix...): `prefix_<pid>_…`, or `prefix_<kind>_<pid>_…`.
 */
export async function databasesMadeBy(prefix: string, pid: number): Promise<string[]> {
  return withClient(testServer().adminUrl, async (c) =>
    (await c.query<{ datname: string }>("select datname from pg_database where datname ~ $1 order by 1", [`^${prefix}_([a-z_]+_)?${pid}_`])).rows.map(
      (r) => r.datname,
    ),
  );
}

/** Runs a Node script (with tsx, for .ts) as a subprocess, as a user would; collects its output. */
export function runNode(
  script: string,
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ code: number; stdout: string; stderr: string; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(script.endsWith(".ts") ? ["--import", "tsx"] : []), script, ...args], {
      env: { ...process.env, ...env },
    });
    let stdout = "";
    let stderr = "";
    let output = "";
    child.stdout.on("data", (d) => ((stdout += d), (output += d)));
    child.stderr.on("data", (d) => ((stderr += d), (output += d)));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr, output }));
  });
}

export type Isolation = "read committed" | "repeatable read" | "serializable";

export async function withTransaction<T>(
  client: pg.Client,
  fn: () => Promise<T>,
  isolation: Isolation = "read committed",
): Promise<T> {
  await client.query(`begin isolation level ${isolation}`);
  try {
    const result = await fn();
    await client.query("commit");
    return result;
  } catch (e) {
    await client.query("rollback").catch(() => {});
    throw e;
  }
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export async function backendPid(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>("select pg_backend_pid() as pid");
  return rows[0].pid;
}

/** What the backend is waiting on ("Lock:advisory", "Lock:transactionid", ...) or null. */
export async function waitEvent(observer: pg.Client, pid: number): Promise<string | null> {
  const { rows } = await observer.query<{ w: string | null }>(
    `select case when state = 'active' and wait_event_type = 'Lock'
                 then wait_event_type || ':' || wait_event end as w
       from pg_catalog.pg_stat_activity where pid = $1`,
    [pid],
  );
  return rows[0]?.w ?? null;
}

/** Resolves with the wait event once `pid` is blocked on a lock; fails after timeoutMs. */
export async function waitUntilBlocked(observer: pg.Client, pid: number, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const w = await waitEvent(observer, pid);
    if (w) return w;
    if (Date.now() > deadline) throw new Error(`backend ${pid} never blocked on a lock`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Role rows as Aleph makes them (its booleans have no server defaults). */
export async function createRoles(
  client: pg.Client,
  spec: { users?: number; groups?: number; prefix?: string },
): Promise<{ users: number[]; groups: number[] }> {
  const prefix = spec.prefix ?? uniqueName("t");
  const insert = async (type: "user" | "group", n: number) => {
    if (!n) return [];
    const { rows } = await client.query<{ id: number }>(
      `insert into public.role (foreign_id, name, type, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at)
       select $1 || ':' || g, $1 || ' ' || g, $2::public.role_type, false, false, false, false, now(), now()
         from generate_series(1, $3) g
       returning id`,
      [`${prefix}-${type}`, type, n],
    );
    return rows.map((r) => r.id).sort((a, b) => a - b);
  };
  return { users: await insert("user", spec.users ?? 0), groups: await insert("group", spec.groups ?? 0) };
}

export async function groupsOf(client: pg.Client, memberId: number): Promise<number[]> {
  const { rows } = await client.query<{ group_id: number }>(
    "select group_id from public.role_membership where member_id = $1 order by group_id",
    [memberId],
  );
  return rows.map((r) => r.group_id);
}

export async function duplicatePairs(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    "select count(*) as n from public.role_membership_duplicates",
  );
  return Number(rows[0].n);
}

export async function sync(
  client: pg.Client,
  memberId: number,
  groupIds: number[],
): Promise<{ added: number[]; removed: number[] }> {
  const { rows } = await client.query<{ added: number[]; removed: number[] }>(
    "select added, removed from public.sync_role_memberships($1::int, $2::int[])",
    [memberId, groupIds],
  );
  return rows[0];
}

/** A random subset of `pool`, in random order, with an occasional repeat. */
export function randomSubset(pool: number[], rnd: () => number = Math.random): number[] {
  const picked = pool.filter(() => rnd() < 0.5);
  if (picked.length && rnd() < 0.2) picked.push(picked[0]);
  return picked.sort(() => rnd() - 0.5);
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The server's major version (10 … 18), for the few expectations that differ by version. */
export async function serverMajor(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>("select current_setting('server_version_num')::integer / 10000 as n");
  return rows[0].n;
}

/**
 * A database as rolesync 0.1.0 left it: its migrations 000001-000008 and its
 * hooks, applied by graphile-migrate's own `migrate` (0.1.0's runner) into
 * graphile_migrate.migrations. The upgrade tests start from here. The hooks
 * are today's; 0.1.0's did the same for a database with Aleph's tables.
 * 0.1.0's first migration does not parse on PostgreSQL 10 or 11, so there
 * no such database exists; there the same ledger is made with the versions
 * in migrations/compat/pg10-11 (graphile-migrate's AllowInvalidHash).
 */
export async function installRelease010(url: string, appRole: string): Promise<string[]> {
  const dir = mkdtempSync(path.join(tmpdir(), "rolesync-0.1.0-"));
  try {
    cpSync(path.join(packageRoot, "migrations"), dir, {
      recursive: true,
      filter: (src) => !/committed\/0000(09|[1-9]\d)/.test(src) && !src.endsWith("current.sql"),
    });
    const major = await withClient(url, async (c) =>
      Number((await c.query("select current_setting('server_version_num')::int / 10000 as m")).rows[0].m),
    );
    if (major < 12) cpSync(path.join(packageRoot, "migrations", "compat", "pg10-11"), path.join(dir, "committed"), { recursive: true });
    const executed: string[] = [];
    const logger = new Logger(() => (_level, message) => {
      const m = /Running migration '([^']+)'/.exec(message);
      if (m) executed.push(m[1]);
    });
    await gmMigrate(
      {
        connectionString: url,
        migrationsFolder: dir,
        placeholders: { ":ROLESYNC_APP_ROLE": appRole },
        beforeAllMigrations: ["hooks/aleph-tables.sql", "hooks/drop-invalid-indexes.sql"],
        logger,
      },
      false,
      false,
    );
    return executed;
  } finally {
    // graphile-migrate's pools otherwise linger, and break a database drop.
    clearAllPools();
    rmSync(dir, { recursive: true, force: true });
  }
}
