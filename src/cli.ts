/*
 * The `rolesync` command line for operators. Thin: every command is one call
 * into the database (or into the migration runner) and a way to print it.
 *
 * Exit codes: 0 ok; 1 `check` found a problem; 2 usage error (bad arguments,
 * no or a malformed database URL); 3 PostgreSQL refused the operation (its
 * SQLSTATE is shown; a statement timeout is 57014); 4 the database could not
 * be reached (a connect timeout included); 5 rolesync is not installed in
 * that database (`sync`, `dedupe`, and `dedupe --dry-run` where Aleph's table
 * is missing too; `status` reports it and exits 0, `check` reports it as a
 * problem and exits 1).
 *
 * Every connection gives up connecting after --connect-timeout seconds
 * (default 10), and the read-only commands (status, check, dedupe --dry-run)
 * cancel a statement after --statement-timeout seconds (default 60), so that
 * a server that accepts the connection and never answers, or a lock held by
 * a long transaction, cannot hang them.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { Command, CommanderError, Option } from "commander";
import pg from "pg";
import {
  appliedMigrations,
  DEFAULT_MAINTENANCE_WORK_MEM,
  loadMigrations,
  runMigrations,
  MigrationError,
  packageRoot,
  type MigrateEvent,
  type Migration,
} from "./migrate.ts";
import { psqlScript, uninstallScript } from "./psql.ts";
import { alembicLine, runUninstall, type UninstallEvent, type UninstallStep } from "./uninstall.ts";
import { syncRoleMemberships } from "./client.ts";
import { membershipDirt } from "./dirt.ts";
import { sqlstate as sqlstateEntry } from "./sqlstates.ts";
import { packageVersion } from "./version.ts";
import { watchProgress, withApplicationName } from "./progress.ts";
import { ConnectTimeoutError, databaseUrlProblem, redact, withClient, type ClientOptions } from "./pg.ts";

export const EXIT = { ok: 0, problem: 1, usage: 2, refused: 3, unreachable: 4, notInstalled: 5 } as const;

/** What every command says when the database has no rolesync yet. */
export const NOT_INSTALLED = "rolesync is not installed in this database: run `rolesync migrate`";

const DEFAULT_CONNECT_TIMEOUT_S = 10;
const DEFAULT_STATEMENT_TIMEOUT_S = 60;
/** status counts role_membership exactly up to this heap size (about 200,000 rows, a few ms), and estimates above. */
const EXACT_COUNT_MAX_BYTES = 8 * 1024 * 1024;

class UsageError extends Error {
  constructor(message: string, readonly hint?: string) {
    super(message);
  }
}
/** rolesync's functions are missing: exit 5, with a hint naming what is missing. */
class NotInstalledError extends Error {
  constructor(readonly hint: string) {
    super(NOT_INSTALLED);
  }
}

interface Globals {
  databaseUrl?: string;
  json?: boolean;
  connectTimeout?: string;
  statementTimeout?: string;
}

/** Where a command writes: stdout for the result, stderr for progress when --json owns stdout. */
class Out {
  constructor(readonly json: boolean) {}
  line(s: string) {
    (this.json ? process.stderr : process.stdout).write(s + "\n");
  }
  result(value: unknown, human: () => void) {
    if (this.json) process.stdout.write(JSON.stringify(value) + "\n");
    else human();
  }
}

interface Context {
  url: string;
  out: Out;
  /** For the commands that change things (migrate, dedupe, sync): the connect timeout only. */
  write: ClientOptions;
  /** For the read-only ones (status, check, dedupe --dry-run): the statement timeout too. */
  read: ClientOptions;
}

function context(cmd: Command): Context {
  const globals = cmd.optsWithGlobals<Globals>();
  const url = globals.databaseUrl ?? process.env.DATABASE_URL;
  if (!url) {
    throw new UsageError(
      "no database given: set DATABASE_URL or pass --database-url postgres://user@host:5432/dbname",
    );
  }
  const problem = databaseUrlProblem(url);
  if (problem) {
    throw new UsageError(
      `${globals.databaseUrl !== undefined ? "--database-url" : "DATABASE_URL"} is not a PostgreSQL URL: ${problem}`,
      "Give it as postgres://user:password@host:5432/dbname (percent-encode reserved characters).",
    );
  }
  const connectTimeoutMs = timeoutMs(globals.connectTimeout, "--connect-timeout", "ROLESYNC_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_S);
  const statementTimeoutMs = timeoutMs(globals.statementTimeout, "--statement-timeout", "ROLESYNC_STATEMENT_TIMEOUT", DEFAULT_STATEMENT_TIMEOUT_S);
  return {
    url,
    out: new Out(Boolean(globals.json)),
    write: { connectTimeoutMs },
    read: { connectTimeoutMs, statementTimeoutMs },
  };
}

/** Seconds from the option, else the environment variable, else the default; in ms, 0 for none. */
function timeoutMs(option: string | undefined, flag: string, env: string, defaultSeconds: number): number {
  const [value, from] = option !== undefined ? [option, flag] : process.env[env] ? [process.env[env]!, env] : [String(defaultSeconds), ""];
  const ms = /^\s*\d+(\.\d+)?\s*$/.test(value) ? Math.round(Number(value) * 1000) : NaN;
  if (!Number.isFinite(ms) || ms > 2 ** 31 - 1) {
    throw new UsageError(`${from} must be a number of seconds (0 for none), not "${value}"`);
  }
  return ms;
}

async function installed(c: pg.Client, fn: string): Promise<boolean> {
  const { rows } = await c.query<{ ok: boolean }>("select pg_catalog.to_regprocedure($1) is not null as ok", [fn]);
  return rows[0].ok;
}

async function alephTablesExist(c: pg.Client): Promise<boolean> {
  const { rows } = await c.query<{ ok: boolean }>("select pg_catalog.to_regclass('public.role_membership') is not null as ok");
  return rows[0].ok;
}

/** The hint of a NotInstalledError: what is missing, and what to run first. */
async function notInstalledHint(c: pg.Client, missing: string): Promise<string> {
  return (await alephTablesExist(c))
    ? `${missing} is missing; \`rolesync status\` lists the pending migrations.`
    : "Aleph's tables are missing too (no public.role_membership): run `aleph upgrade` first, " +
        "or `rolesync migrate --create-aleph-schema` for a standalone database.";
}

function describeEvent(e: MigrateEvent): string | null {
  switch (e.type) {
    case "start":
      return `application role: ${e.appRole}`;
    case "adopted":
      return `adopted ${e.filenames.length} migration(s) from graphile_migrate.migrations into rolesync.migrations (${e.filenames[0]} to ${e.filenames.at(-1)})`;
    case "not-adopted":
      return `not adopted: graphile_migrate.migrations lists rolesync's ${e.filenames[0]} to ${e.filenames.at(-1)}, but ${e.reason}`;
    case "migration":
      return `→ ${e.name}`;
    case "skipped":
      return `→ ${e.name}: nothing to do, ${e.reason} (recorded)`;
    case "retry":
      return `  retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s: ${e.reason}`;
    case "progress":
      return `  … ${e.step}: ${e.detail || "running"} (${e.seconds} s)`;
    case "hook":
      return `→ ${e.file} (hook): ${e.did}`;
    case "done":
      return e.executed.length
        ? `${e.executed.length} migration(s) applied in ${e.seconds.toFixed(1)} s (` +
            e.steps.map((s) => `${s.name.slice(0, 6)} ${s.seconds.toFixed(1)} s`).join(", ") +
            ")"
        : e.hooks.length
          ? `no migration pending; the hooks made ${e.hooks.length} change(s), listed above (${e.seconds.toFixed(1)} s)`
          : `already up to date (${e.seconds.toFixed(1)} s)`;
  }
}

function parseId(value: string, what: string): number {
  if (!/^-?\d+$/.test(value) || Math.abs(Number(value)) > 2 ** 31 - 1) {
    throw new UsageError(`${what} must be an integer id, not "${value}"`);
  }
  return Number(value);
}

interface CheckRow {
  check_name: string;
  ok: boolean;
  count: string | null;
  detail: string;
  hint: string | null;
}

async function migrateCommand(
  opts: { appRole?: string; lockRetries: string; createAlephSchema?: boolean; maintenanceWorkMem?: string },
  cmd: Command,
) {
  const { url, out, write } = context(cmd);
  const lockRetries = Number(opts.lockRetries);
  if (!Number.isInteger(lockRetries) || lockRetries < 0) {
    throw new UsageError(`--lock-retries must be a whole number, not ${opts.lockRetries}`);
  }
  out.line(`rolesync: migrating ${redact(url)}`);
  const result = await runMigrations({
    databaseUrl: url,
    // The connect timeout (pg reads none from a URL): a silent server fails fast.
    clientOptions: write,
    appRole: opts.appRole ?? process.env.ROLESYNC_APP_ROLE,
    lockRetries,
    createAlephSchema: Boolean(opts.createAlephSchema),
    maintenanceWorkMem: opts.maintenanceWorkMem ?? (process.env.ROLESYNC_MAINTENANCE_WORK_MEM || undefined),
    onEvent: (e) => {
      const line = describeEvent(e);
      if (line) out.line(line);
    },
  });
  out.result({ executed: result.executed, steps: result.steps, hooks: result.hooks }, () => {});
}

/**
 * The ledger against the migrations of this package, which the SQL check
 * cannot know: pending ones (an interrupted or older install), and rows this
 * package does not know (a newer rolesync, or an edited ledger).
 */
function ledgerRow(applied: Map<string, string>, migrations: Migration[]): CheckRow {
  const ours = new Map(migrations.map((m) => [m.filename, m.hash]));
  const last = migrations.at(-1)?.filename ?? "";
  const foreign = [...applied].filter(([f, h]) => ours.get(f) !== h).map(([f]) => f);
  const pending = migrations.filter((m) => !applied.has(m.filename)).map((m) => m.file);
  const row = (ok: boolean, detail: string, hint: string | null): CheckRow => ({
    check_name: "migrations",
    ok,
    count: String(applied.size),
    detail,
    hint,
  });
  if (foreign.length && foreign.every((f) => f > last)) {
    return row(
      false,
      `rolesync.migrations goes on to ${foreign.at(-1)}: a newer rolesync migrated this database, and this one (${packageVersion()}, up to ${last}) cannot check it`,
      "Run the `rolesync check` of the version that migrated it, or a later one.",
    );
  }
  if (foreign.length) {
    return row(
      false,
      `rolesync.migrations holds ${foreign.join(", ")} with another hash than this rolesync's`,
      "The ledger was edited: compare rolesync.migrations with the migrations of the rolesync version that installed it.",
    );
  }
  if (pending.length) {
    return row(
      false,
      `${applied.size} of ${migrations.length} migrations applied; pending: ${pending.join(", ")} (an interrupted or older install)`,
      "Run `rolesync migrate`: it applies what is missing.",
    );
  }
  return row(true, `${applied.size} of ${migrations.length} migrations applied`, null);
}

async function checkCommand(_opts: unknown, cmd: Command) {
  const { url, out, read } = context(cmd);
  const rows = await withClient(url, async (c): Promise<CheckRow[]> => {
    const migrations = loadMigrations();
    const applied = await appliedMigrations(c, migrations);
    const hasCheck = await installed(c, "public.role_membership_check()");
    if (hasCheck || applied.size > 0) {
      const rows: CheckRow[] = hasCheck
        ? (await c.query<CheckRow>("select * from public.role_membership_check()")).rows
        : [
            {
              check_name: "functions",
              ok: false,
              count: null,
              detail: "public.role_membership_check() is missing: rolesync's functions were dropped by hand",
              hint: "Reinstall: `rolesync uninstall`, then `rolesync migrate` (the key and the archive are kept).",
            },
          ];
      // This package knows its own migrations better than the function a migration made.
      const ledger = ledgerRow(applied, migrations);
      const at = rows.findIndex((r) => r.check_name === "migrations");
      if (at >= 0) rows[at] = ledger;
      else rows.push(ledger);
      return rows;
    }
    // Not migrated yet: a problem (exit 1) like any other, and how dirty the table is, with the seed's query.
    const base: CheckRow = {
      check_name: "installed",
      ok: false,
      count: null,
      detail: NOT_INSTALLED,
      hint: await notInstalledHint(c, "public.role_membership_check()"),
    };
    if (!(await alephTablesExist(c))) return [base];
    const d = await membershipDirt(c, 0);
    return [
      base,
      { check_name: "duplicates", ok: d.surplusCopies === 0, count: String(d.surplusCopies), detail: `${d.surplusCopies} surplus copies of stored pairs`, hint: null },
      { check_name: "null_rows", ok: d.nullRows === 0, count: String(d.nullRows), detail: `${d.nullRows} row(s) with a NULL group_id or member_id`, hint: null },
    ];
  }, read);
  const ok = rows.every((r) => r.ok);
  out.result(
    { ok, checks: rows.map((r) => ({ ...r, count: r.count === null ? null : Number(r.count) })) },
    () => {
      for (const r of rows) {
        console.log(`${r.ok ? "ok  " : "FAIL"}  ${r.check_name.padEnd(22)} ${r.detail}`);
        if (!r.ok && r.hint) console.log(`      ${"".padEnd(22)} hint: ${r.hint}`);
      }
      console.log(ok ? "rolesync check: all good" : "rolesync check: problems found (exit 1)");
    },
  );
  if (!ok) process.exitCode = EXIT.problem;
}

async function dedupeCommand(opts: { dryRun?: boolean }, cmd: Command) {
  const { url, out, read, write } = context(cmd);
  if (opts.dryRun) {
    const result = await withClient(url, async (c) => {
      // Works before migrating, on Aleph's table; without it there is nothing to count.
      if (!(await alephTablesExist(c))) throw new NotInstalledError(await notInstalledHint(c, "public.role_membership"));
      // rolesync.role_membership_dirt() where installed, else the same query (src/dirt.ts).
      const d = await membershipDirt(c, 10);
      return {
        dryRun: true,
        duplicatedPairs: d.duplicatedPairs,
        surplusCopies: d.surplusCopies,
        nullRows: d.nullRows,
        wouldRemove: d.surplusCopies + d.nullRows,
        worst: d.worst,
      };
    }, read);
    out.result(result, () => {
      console.log(
        `dry run: would remove ${result.wouldRemove} row(s): ${result.surplusCopies} surplus copies of ` +
          `${result.duplicatedPairs} duplicated pair(s), and ${result.nullRows} NULL row(s). Nothing was changed.`,
      );
      for (const w of result.worst) console.log(`  member ${w.memberId}, group ${w.groupId}: ${w.copies} copies`);
      if (result.wouldRemove) console.log("Each removed row would be archived in rolesync.role_membership_removed.");
    });
    return;
  }
  const appName = "rolesync-dedupe";
  const { removed, archive } = await withClient(withApplicationName(url, appName), async (c) => {
    if (!(await installed(c, "public.dedupe_role_memberships()"))) {
      throw new NotInstalledError(
        (await alephTablesExist(c))
          ? "public.dedupe_role_memberships() is missing. `rolesync migrate` installs the guard and dedupes, in that order; `rolesync dedupe --dry-run` counts before."
          : await notInstalledHint(c, "public.dedupe_role_memberships()"),
      );
    }
    const stop = watchProgress(url, appName, 1000, (p) => out.line(`  … dedupe running (${p.seconds} s)`));
    try {
      const { rows } = await c.query<{ n: string }>("select public.dedupe_role_memberships() as n");
      // Where this database's dedupe archives: schema rolesync since 000012, public before.
      const { rows: a } = await c.query<{ archive: string }>(
        `select case when pg_catalog.to_regclass('rolesync.role_membership_removed') is not null
                     then 'rolesync.role_membership_removed' else 'public.role_membership_removed' end as archive`,
      );
      return { removed: Number(rows[0].n), archive: a[0].archive };
    } finally {
      await stop();
    }
  }, write);
  out.result({ removed }, () => console.log(`removed ${removed} row(s); each is archived in ${archive}`));
}

function describeUninstallEvent(e: UninstallEvent): string | null {
  switch (e.type) {
    case "step":
      return `→ ${e.step.statement}\n    ${e.step.why}`;
    case "retry":
      return `  retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s: ${e.reason}`;
    case "progress":
      return `  … ${e.step}: ${e.detail || "running"} (${e.seconds} s)`;
    case "done":
      return null; // the result says it, after what stays
  }
}

async function uninstallCommand(opts: { dryRun?: boolean; dropArchive?: boolean; lockRetries: string }, cmd: Command) {
  const { url, out, write } = context(cmd);
  const lockRetries = Number(opts.lockRetries);
  if (!Number.isInteger(lockRetries) || lockRetries < 0) {
    throw new UsageError(`--lock-retries must be a whole number, not ${opts.lockRetries}`);
  }
  const dryRun = Boolean(opts.dryRun);
  out.line(dryRun ? `rolesync: uninstall, dry run, on ${redact(url)}` : `rolesync: uninstalling from ${redact(url)}`);
  const result = await runUninstall({
    databaseUrl: url,
    dryRun,
    dropArchive: Boolean(opts.dropArchive),
    lockRetries,
    clientOptions: write,
    onEvent: (e) => {
      const line = describeUninstallEvent(e);
      if (line) out.line(line);
    },
  });
  const print = (s: UninstallStep) => console.log(`${dryRun ? "would run" : "ran"}: ${s.statement}\n    ${s.why}`);
  out.result(result, () => {
    if (dryRun) for (const s of result.steps) print(s);
    if (!result.steps.length) console.log("nothing of rolesync's to take out here");
    for (const k of result.kept) console.log(`kept: ${k.why}`);
    if (dryRun) console.log(`dry run: ${result.steps.length} statement(s) would run. Nothing was changed.`);
    else if (result.steps.length) console.log(`uninstalled in ${result.seconds.toFixed(1)} s (${result.steps.length} statement(s))`);
  });
}

async function syncCommand(roleId: string, groupIds: string[], opts: { none?: boolean }, cmd: Command) {
  const { url, out, write } = context(cmd);
  const member = parseId(roleId, "role-id");
  if (groupIds.length === 0 && !opts.none) {
    throw new UsageError("no group ids given: pass them, or --none to remove every membership");
  }
  if (groupIds.length > 0 && opts.none) throw new UsageError("--none and group ids exclude each other");
  const groups = groupIds.map((g) => parseId(g, "group-id"));
  const result = await withClient(url, async (c) => {
    if (!(await installed(c, "public.sync_role_memberships(integer, integer[], text)"))) {
      throw new NotInstalledError(await notInstalledHint(c, "public.sync_role_memberships()"));
    }
    return syncRoleMemberships(c, member, groups);
  }, write);
  out.result(result, () => {
    console.log(`member ${member}: added [${result.added.join(", ")}], removed [${result.removed.join(", ")}]`);
  });
}

async function statusCommand(_opts: unknown, cmd: Command) {
  const { url, out, read } = context(cmd);
  const available = readdirSync(path.join(packageRoot, "migrations", "committed"))
    .filter((f) => f.endsWith(".sql"))
    .sort();
  const status = await withClient(url, async (c) => {
    const { rows: v } = await c.query<{ v: string; db: string }>(
      "select current_setting('server_version') as v, current_database() as db",
    );
    // rolesync.migrations, and 0.1.0's rows in graphile_migrate.migrations that `migrate` adopts.
    const applied = [...(await appliedMigrations(c)).keys()];
    const { rows: t } = await c.query<{
      exists: boolean;
      rows: string | null;
      heap_bytes: string | null;
      size: string | null;
      guarded: boolean;
    }>(
      // reltuples is the planner's estimate: -1 before the first ANALYZE on 14+, 0 before it on 10 to 13.
      `select pg_catalog.to_regclass('public.role_membership') is not null as exists,
              (select case when reltuples < 0 or (reltuples = 0 and relpages = 0) then null else reltuples::bigint end
                 from pg_catalog.pg_class where oid = pg_catalog.to_regclass('public.role_membership')) as rows,
              pg_catalog.pg_relation_size(pg_catalog.to_regclass('public.role_membership')) as heap_bytes,
              pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size(pg_catalog.to_regclass('public.role_membership'))) as size,
              exists (select from pg_catalog.pg_trigger
                       where tgrelid = pg_catalog.to_regclass('public.role_membership') and tgname = 'role_membership_guard') as guarded`,
    );
    // The constraints keying role_membership, the primary key first: what
    // rolesync.role_membership_key() answers, read from the catalog so that
    // it works before 000012 and for a role without EXECUTE on it.
    const { rows: keys } = await c.query<{ conname: string; primary: boolean }>(
      `select c.conname, c.contype = 'p' as primary
         from pg_catalog.pg_constraint c
        where c.conrelid = pg_catalog.to_regclass('public.role_membership')
          and (c.contype = 'p' or (c.contype = 'u' and c.conname = 'rolesync_role_membership_key'))
        order by c.contype = 'p' desc, c.conname`,
    );
    // rolesync's tables: in schema rolesync since 000012, in public before
    // (a database migrated by 0.1.0). Counted only where they exist: a query
    // naming a missing table fails (42P01) however it is guarded.
    const archive = await countRows(c, ["rolesync.role_membership_removed", "public.role_membership_removed"]);
    const versions = await countRows(c, ["rolesync.role_membership_version", "public.role_membership_version"]);
    // A small table is counted (a few ms up to EXACT_COUNT_MAX_BYTES), so a new or never analyzed one
    // does not read "~0 rows"; a big one keeps the planner's estimate, which costs nothing.
    const exact =
      t[0].exists && Number(t[0].heap_bytes ?? 0) <= EXACT_COUNT_MAX_BYTES
        ? await countRows(c, ["public.role_membership"])
        : null;
    // Committed files are named 000001-<slug>.sql; the ledger records them as 000001.sql.
    const appliedNumbers = new Set(applied.map((f) => f.slice(0, 6)));
    // Whose Alembic chain the database follows (rolesync.alembic_line(), or its condition file before 000017).
    const line = await alembicLine(c);
    return {
      database: v[0].db,
      server: `PostgreSQL ${v[0].v}`,
      /** none, aleph-before-4.1, aleph-4.1, openaleph or unknown: who, if anyone, keys role_membership besides rolesync. */
      alembicLine: line,
      installed: applied.length > 0,
      migrations: {
        applied: applied.length,
        available: available.length,
        pending: available.filter((f) => !appliedNumbers.has(f.slice(0, 6))),
      },
      roleMembership: {
        exists: t[0].exists,
        /** The row count: exact for a table of up to 8 MB, else the planner's estimate (null before the first ANALYZE). */
        rows: exact ?? (t[0].rows === null ? null : Math.max(0, Number(t[0].rows))),
        rowsExact: exact !== null,
        /** The planner's estimate (pg_class.reltuples); null before the table's first ANALYZE. */
        estimatedRows: t[0].rows === null ? null : Math.max(0, Number(t[0].rows)),
        size: t[0].size,
        /** A PRIMARY KEY constraint is in place (its meaning before rolesync had a key of its own). */
        primaryKey: keys.some((k) => k.primary),
        /** The constraint keying the table: role_membership_pkey, rolesync_role_membership_key, or null. */
        key: keys.length ? keys[0].conname : null,
        /** Both keys at once: Aleph's 4.1 upgrade added its own since the last `rolesync migrate`. */
        redundantKey: keys.length > 1 ? keys[1].conname : null,
        guardTrigger: t[0].guarded,
        archivedRows: archive,
        membersSynced: versions,
      },
    };
  }, read);
  out.result(status, () => {
    const r = status.roleMembership;
    console.log(`${status.database} on ${status.server}`);
    console.log(
      `migrations: ${status.migrations.applied} of ${status.migrations.available} applied` +
        (status.migrations.pending.length ? `; pending: ${status.migrations.pending.join(", ")}` : ""),
    );
    if (!status.installed) console.log(NOT_INSTALLED);
    if (!r.exists) {
      console.log("role_membership: missing (Aleph's tables are not installed here: `aleph upgrade` first)");
      return;
    }
    console.log(
      `role_membership: ${rowCount(r)}, ${r.size ?? "?"} with indexes, ` +
        `key ${describeKey(r.key, r.primaryKey, status.alembicLine)}, guard trigger ${r.guardTrigger ? "yes" : "no"}`,
    );
    if (r.redundantKey) {
      console.log(`also keyed by ${r.redundantKey}: one key too many; the next \`rolesync migrate\` keeps the one Aleph's Alembic state calls for`);
    }
    if (r.archivedRows !== null) console.log(`archived by the dedupe: ${r.archivedRows} row(s)`);
    if (r.membersSynced !== null) console.log(`members changed by sync_role_memberships: ${r.membersSynced}`);
  });
}

/** status's row count: exact for a small table, else the planner's estimate, said as such. */
function rowCount(r: { rows: number | null; rowsExact: boolean }): string {
  if (r.rowsExact) return `${r.rows} rows`;
  if (r.rows === null) return "rows not estimated yet (ANALYZE role_membership gives an estimate)";
  return `~${r.rows} rows (the planner's estimate)`;
}

/** The first of `tables` that exists, counted; null when none does. The names are constants, never input. */
async function countRows(c: pg.Client, tables: string[]): Promise<number | null> {
  for (const table of tables) {
    const { rows } = await c.query<{ exists: boolean }>("select pg_catalog.to_regclass($1) is not null as exists", [table]);
    if (rows[0].exists) {
      return Number((await c.query<{ n: string }>(`select pg_catalog.count(*) as n from ${table}`)).rows[0].n);
    }
  }
  return null;
}

function describeKey(key: string | null, primary: boolean, line: string): string {
  if (key === null) return "NONE (run `rolesync migrate`)";
  if (primary) return `${key} (primary key)`;
  switch (line) {
    case "aleph-before-4.1":
      return `${key} (unique, until Aleph's 4.1 upgrade adds role_membership_pkey)`;
    case "openaleph":
      return `${key} (unique; OpenAleph's Alembic adds no key of its own, so it stays)`;
    case "unknown":
      return `${key} (unique; the Alembic revision is not one rolesync knows, so it stays)`;
    default:
      return `${key} (unique; no one else keys the table, so it stays)`;
  }
}

export function buildProgram(): Command {
  const program = new Command("rolesync")
    .description("Race-free group-membership sync for PostgreSQL (Aleph's role_membership).")
    .addOption(new Option("--database-url <url>", "the database (default: $DATABASE_URL)"))
    .version(packageVersion())
    .option("--json", "machine-readable output on stdout (progress goes to stderr)")
    .option(
      "--connect-timeout <seconds>",
      `give up connecting after this long, 0 for never (default: $ROLESYNC_CONNECT_TIMEOUT, else ${DEFAULT_CONNECT_TIMEOUT_S})`,
    )
    .option(
      "--statement-timeout <seconds>",
      `status, check and dedupe --dry-run: cancel a statement after this long, 0 for never (default: $ROLESYNC_STATEMENT_TIMEOUT, else ${DEFAULT_STATEMENT_TIMEOUT_S})`,
    )
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .addHelpText(
      "after",
      "\nExit codes: 0 ok, 1 check found a problem, 2 usage error, 3 PostgreSQL refused (SQLSTATE shown; 57014 a statement timeout),\n" +
        "4 database unreachable (a connect timeout too), 5 rolesync not installed in the database (run `rolesync migrate`).",
    );

  program
    .command("migrate")
    .description("apply the migrations: key role_membership online (dedupe, concurrent index builds, short locks)")
    .option("--app-role <role>", "role granted EXECUTE (default: $ROLESYNC_APP_ROLE, else the connecting user)")
    .option("--lock-retries <n>", "retries when a lock is not granted within lock_timeout", "30")
    .option(
      "--maintenance-work-mem <size>",
      `memory for each index build, e.g. 1GB (default: $ROLESYNC_MAINTENANCE_WORK_MEM, else at least ${DEFAULT_MAINTENANCE_WORK_MEM}; "server": the server's own)`,
    )
    .option(
      "--create-aleph-schema",
      "standalone database without Aleph: create role_type, role and role_membership as Aleph 4.1.6 has them (no effect where they exist)",
    )
    .addHelpText(
      "after",
      "\nAleph's tables (role, role_membership) must exist: a database without them is\n" +
        "refused (RS012) before any migration runs. Install Aleph's schema first\n" +
        "(`aleph upgrade`), or, for a standalone database, pass --create-aleph-schema.",
    )
    .action(migrateCommand);

  program
    .command("check")
    .description("report the key, duplicates, NULL rows, invalid indexes and memberships of soft-deleted roles; exit 1 on a problem")
    .action(checkCommand);

  program
    .command("dedupe")
    .description("remove duplicate and NULL rows, archiving each (migrate does this too)")
    .option("--dry-run", "only count what would be removed; works before migrating")
    .action(dedupeCommand);

  program
    .command("sync")
    .description("set a member's groups to exactly the ids given, and print what changed")
    .argument("<role-id>", "the member's role id")
    .argument("[group-id...]", "the group role ids")
    .option("--none", "remove every membership (instead of listing no groups by mistake)")
    .action(syncCommand);

  program
    .command("status")
    .description("show the server, the migrations applied and pending, and role_membership's size and key")
    .action(statusCommand);

  program
    .command("uninstall")
    .description(
      "take out what rolesync added (functions, trigger, view, group index, its tables and ledger, the privileges it granted); " +
        "keep a key on role_membership and, by default, the archive",
    )
    .option("--dry-run", "list what it would run and what stays; change nothing")
    .option("--drop-archive", "drop the archive of removed rows too (rolesync.role_membership_removed)")
    .option("--lock-retries <n>", "retries when a lock is not granted within lock_timeout", "30")
    .addHelpText(
      "after",
      "\nrole_membership keeps a key: Aleph's primary key where Aleph's Alembic declares it (4.1+), else\n" +
        "rolesync_role_membership_key (before Aleph 4.1: its upgrade then passes; run uninstall again after it).\n" +
        "Only privileges the application role lacked before rolesync granted them are revoked.\n" +
        "Turn off whatever calls rolesync's functions first (the Aleph plugin: ROLESYNC_ALEPH=off).\n" +
        "With psql alone: rolesync sql --uninstall > rolesync-uninstall.sql (docs/aleph.md, section 8).",
    )
    .action(uninstallCommand);

  program
    .command("sql")
    .description("print one psql script that applies what `migrate` applies (or, with --uninstall, what `uninstall` does), for a database reached with psql alone")
    .option("--uninstall", "print the script of `rolesync uninstall` instead")
    .addHelpText(
      "after",
      "\nApply it with: psql -v ON_ERROR_STOP=1 -v app_role=<your app's role> -f rolesync.sql \"$DATABASE_URL\"\n" +
        "The uninstall script: psql -v ON_ERROR_STOP=1 [-v dry_run=on] [-v drop_archive=on] -f rolesync-uninstall.sql \"$DATABASE_URL\"\n" +
        "They need no database URL here, and refuse psql -1 (--single-transaction). docs/aleph.md has docker-compose and Helm.",
    )
    .action((opts: { uninstall?: boolean }) => {
      const made = { version: packageVersion(), command: opts.uninstall ? "rolesync sql --uninstall" : "rolesync sql" };
      process.stdout.write(opts.uninstall ? uninstallScript(made) : psqlScript(made));
    });

  return program;
}

/** Runs the CLI; returns the exit code instead of exiting, for tests. */
/** npm's own settings that share a name with one of rolesync's options: npm_config_<name> may come from an .npmrc. */
const NPM_OWN_SETTINGS = new Set(["json", "dry-run"]);

/**
 * Run from an npm script (`npm run migrate --app-role aleph`), npm keeps
 * every option before `--` for itself: it exports it as npm_config_app_role
 * and passes the rest on, so rolesync gets `migrate aleph` (too many
 * arguments) or, for `--app-role=aleph`, nothing at all and would run with
 * the default. Either way, stop before connecting and show the line with
 * `--`.
 */
function npmTookOptions(program: Command, argv: string[], env: NodeJS.ProcessEnv): UsageError | undefined {
  const script = env.npm_lifecycle_event;
  if (!script) return undefined;
  const options = [program, ...program.commands].flatMap((c) => c.options);
  const positional = argv.filter((a) => !a.startsWith("-")).slice(1); // after the command's name
  const taken: string[] = [];
  const seen = new Set<string>();
  for (const o of options) {
    const name = o.long?.replace(/^--/, "");
    if (!name || seen.has(name) || NPM_OWN_SETTINGS.has(name) || name === "version" || name === "help") continue;
    seen.add(name);
    const value = env[`npm_config_${name.replace(/-/g, "_")}`];
    if (value === undefined) continue;
    const takesValue = o.required || o.optional;
    if (!takesValue) taken.push(`--${name}`);
    else if (value !== "true" && value !== "") taken.push(`--${name} ${value}`);
    else taken.push(`--${name} ${positional.shift() ?? "<value>"}`);
  }
  if (!taken.length) return undefined;
  const rest = positional.length ? ` ${positional.join(" ")}` : "";
  const line = `npm run ${script} --${rest} ${taken.join(" ")}`.replace(/\s+$/, "");
  return new UsageError(
    `npm kept ${taken.map((t) => t.split(" ")[0]).join(", ")} for itself: rolesync never saw ${taken.length > 1 ? "them" : "it"}`,
    `npm passes on only what comes after \`--\`: run \`${line}\`.`,
  );
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const json = argv.includes("--json");
  process.exitCode = undefined;
  try {
    const swallowed = npmTookOptions(program, argv, process.env);
    if (swallowed) throw swallowed;
    await program.parseAsync(argv, { from: "user" });
    return process.exitCode === undefined ? EXIT.ok : Number(process.exitCode);
  } catch (e) {
    return reportError(e, json);
  }
}

function reportError(e: unknown, json: boolean): number {
  if (e instanceof CommanderError) {
    // --help ends here too, with exit code 0; commander has printed the message.
    return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  const err = e as { code?: string; message?: string; hint?: string; syscall?: string };
  let code: number = EXIT.refused;
  let sqlstate: string | undefined;
  let hint: string | undefined;
  if (e instanceof UsageError) {
    code = EXIT.usage;
    hint = e.hint;
  } else if (e instanceof NotInstalledError) {
    code = EXIT.notInstalled;
    hint = e.hint;
  } else if (e instanceof ConnectTimeoutError) {
    code = EXIT.unreachable;
    hint =
      "Check the host and port (is PostgreSQL listening there?) and the network; a slow server needs more time: " +
      "--connect-timeout <seconds> or ROLESYNC_CONNECT_TIMEOUT (0 = wait forever).";
  } else if (
    err.code &&
    (/^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET|08\w{3}|3D000|28P01|28000)$/.test(err.code) ||
      // A Unix socket (?host=/dir) that is not there, or not ours to open.
      (/^(ENOENT|EACCES)$/.test(err.code) && err.syscall === "connect"))
  ) {
    code = EXIT.unreachable;
    sqlstate = /^\w{5}$/.test(err.code) ? err.code : undefined;
    hint = "Check the URL, that the server is running, and the credentials.";
  } else if (err.code && /^[0-9A-Z]{5}$/.test(err.code)) {
    sqlstate = err.code;
    hint = err.hint ?? hintFor(err.code);
  } else if (!(e instanceof MigrationError)) {
    hint = "This is unexpected: please report it with the command you ran.";
  }
  const message = err.message ?? String(e);
  if (json) {
    process.stdout.write(JSON.stringify({ error: { exitCode: code, sqlstate: sqlstate ?? null, message, hint: hint ?? null } }) + "\n");
  }
  // "rolesync: " before every error, but not before one that starts with the name already.
  console.error(sqlstate ? `rolesync: ERROR ${sqlstate}: ${message}` : message.startsWith("rolesync ") ? message : `rolesync: ${message}`);
  if (hint) console.error(`hint: ${hint}`);
  return code;
}

/**
 * One line of advice for a SQLSTATE whose error came without a HINT (the
 * server's own wins: rolesync's SQL sets one on every RS error), read from
 * src/sqlstates.ts, the one list of them: its CLI hint, else what to do.
 */
export function hintFor(code: string): string {
  const entry = sqlstateEntry(code);
  if (!entry) return "See the SQLSTATE table in docs/errors.md.";
  if (entry.cliHint) return entry.cliHint;
  const todo = entry.todo.charAt(0).toUpperCase() + entry.todo.slice(1);
  return /[.!?]$/.test(todo) ? todo : `${todo}.`;
}
