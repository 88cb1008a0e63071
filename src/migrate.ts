/*
 * rolesync's migration runner: applies the committed migrations
 * (migrations/committed, written with graphile-migrate's `db:commit`) and
 * records them in rolesync's own ledger, rolesync.migrations, the way
 * graphile-worker keeps its own migrations table.
 *
 * Why not graphile-migrate's `migrate`: it keeps one fixed ledger per
 * database, graphile_migrate.migrations, and runs only the files numbered
 * after the last row there. In a database whose own application uses
 * graphile-migrate too, rolesync would then install nothing and report
 * success (a host with 10 migrations), or start in the middle of its chain
 * (a host with 3). graphile-migrate stays the development workflow
 * (db:watch, db:commit, db:reset) and its file format, parser and hashes are
 * used here as they are (the version is pinned: these are internal modules).
 *
 * What a run does, on one connection, under rolesync's advisory lock:
 * 1. checks the ledger against this version's migrations (RS013 for a newer
 *    rolesync's or an altered chain), before changing anything;
 * 2. the beforeAllMigrations hooks of .gmrc (RS012 without Aleph's tables;
 *    drop an INVALID index an interrupted build left);
 * 3. creates rolesync.migrations if needed, and adopts the rows of
 *    graphile_migrate.migrations that are rolesync's own (filename and hash
 *    both match): a database rolesync 0.1.0 migrated, or a development one;
 *    any other application's rows there are left alone;
 * 4. each pending migration: a transactional one with its ledger row in one
 *    transaction; a no-transaction one (CREATE INDEX CONCURRENTLY, VACUUM)
 *    alone, then its row. One with a `--! RunIf: <file>` header runs only
 *    where that condition file says so, and is recorded either way. On
 *    PostgreSQL 10 and 11, migrations/compat/pg10-11 stands in for the
 *    0.1.0 files those versions cannot parse;
 * 5. the afterAllMigrations hooks, on every run.
 * Around it: the :ROLESYNC_APP_ROLE placeholder (default: the connecting
 * user); retries when a lock was not granted within lock_timeout (55P03) or
 * another run holds the lock; progress of long steps from a second
 * connection; and the opt-in for a standalone database (createAlephSchema),
 * the session setting rolesync.create_aleph_schema the hook reads.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import JSON5 from "json5";
import pg from "pg";
import { parseMigrationText } from "graphile-migrate/dist/migration.js";
import { calculateHash } from "graphile-migrate/dist/hash.js";
import { isNoTransactionDefined } from "graphile-migrate/dist/header.js";
import { watchProgress, withApplicationName } from "./progress.ts";
import { withClient } from "./pg.ts";
// Structural, not pg's types: the published .d.ts must not pull in @types/pg
// (and through it whichever @types/node a user's tree resolves).
import type { Queryable } from "./client.ts";

export const packageRoot = fileURLToPath(new URL("..", import.meta.url));
const APPLICATION_NAME = "rolesync-migrate";
/** The session setting migrations/hooks/aleph-tables.sql reads; plain SQL sets it with SET. */
const CREATE_ALEPH_SCHEMA_SETTING = "rolesync.create_aleph_schema";
/**
 * rolesync's advisory lock ("ROLESYNC" on a phone keypad), taken by the runner
 * and the psql script: never two rolesync migrations at once. It is not
 * graphile-migrate's, so a host application's own graphile-migrate is not
 * turned away while rolesync builds an index.
 */
export const ADVISORY_LOCK = "76537962";
/** The session setting a RunIf condition file sets to on or off. */
export const RUN_IF_SETTING = "rolesync.run_migration";
/**
 * The runner's default floor for maintenance_work_mem (PostgreSQL's own
 * default is 64MB). A 5,000,000-row role_membership's index sorts about
 * 150 MB of keys; with 256MB the build sorts in memory. Memory cost: one
 * backend, once, for one build at a time.
 */
export const DEFAULT_MAINTENANCE_WORK_MEM = "256MB";

/**
 * The majors rolesync supports, checked before anything changes (by the
 * runner, the psql scripts and uninstall): 10, which Aleph's own
 * docker-compose pins, to 18, the newest tested. Before 10 the migrations
 * do not parse (identity columns); a newer major is untested.
 */
export const SUPPORTED_MAJORS = { min: 10, max: 18 } as const;
export const SUPPORTED_MAJORS_SQL = `do $$
begin
  if pg_catalog.current_setting('server_version_num')::integer / 10000
     not between ${SUPPORTED_MAJORS.min} and ${SUPPORTED_MAJORS.max} then
    raise exception using errcode = '0A000',
      message = pg_catalog.format('rolesync supports PostgreSQL ${SUPPORTED_MAJORS.min} to ${SUPPORTED_MAJORS.max}; this server is PostgreSQL %s',
                                  pg_catalog.current_setting('server_version')),
      hint = 'Nothing was changed. Run it on a server of a supported major (pg_upgrade an older one first).';
  end if;
end
$$;`;

/** The last migration of 0.1.0's chain, which the versions in migrations/compat/pg10-11 stand in for. */
const COMPAT_LAST = "000008";

export type MigrateEvent =
  | { type: "start"; appRole: string }
  | { type: "adopted"; filenames: string[] }
  | { type: "not-adopted"; filenames: string[]; reason: string }
  | { type: "migration"; name: string }
  | { type: "skipped"; name: string; reason: string }
  | { type: "retry"; attempt: number; delayMs: number; reason: string }
  | { type: "progress"; step: string; seconds: number; detail: string }
  /** What a hook did (its RAISE NOTICE), once its transaction committed. */
  | { type: "hook"; file: string; did: string }
  | { type: "done"; executed: string[]; seconds: number; steps: { name: string; seconds: number }[]; hooks: HookAction[] };

/** One thing a hook did, as its RAISE NOTICE says: dropping a redundant key, an INVALID index ... */
export interface HookAction {
  /** The hook's file, under migrations/hooks/. */
  file: string;
  did: string;
}

export interface MigrateOptions {
  databaseUrl: string;
  /** SQL identifier of the application role; default: the connecting user. */
  appRole?: string;
  /** How many times to retry after a lock timeout (default 30). */
  lockRetries?: number;
  onEvent?: (event: MigrateEvent) => void;
  /** Poll interval for progress events, in ms (default 1000). */
  progressIntervalMs?: number;
  /**
   * For a standalone database without Aleph: create Aleph's role_type, role
   * and role_membership as Aleph 4.1.6 has them when they are absent. Default
   * false: such a database is refused with RS012. Where Aleph's tables exist
   * it changes nothing.
   */
  createAlephSchema?: boolean;
  /** The folder holding committed/ and hooks/ (default: this package's migrations/). */
  migrationsFolder?: string;
  /**
   * maintenance_work_mem for the runner's session, which its index builds
   * (CREATE INDEX CONCURRENTLY) use: a size such as "512MB". Each build uses
   * up to this much memory once, one build at a time; more memory means fewer
   * sort passes over the table. Default: at least DEFAULT_MAINTENANCE_WORK_MEM
   * (a server set higher keeps its own). "server": the server's setting as it is.
   */
  maintenanceWorkMem?: string;
  /** For the runner's connections: give up connecting after this many milliseconds (default: never). */
  clientOptions?: { connectTimeoutMs?: number };
}

export class MigrationError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly hint: string | undefined,
  ) {
    super(message);
    this.name = "MigrationError";
  }
}

/** One committed migration, as graphile-migrate's parser reads it. */
export interface Migration {
  /** The file's name: 000001-schema.sql. */
  file: string;
  /** Its ledger name, as graphile-migrate records it: 000001.sql. */
  filename: string;
  hash: string;
  previousHash: string | null;
  body: string;
  transaction: boolean;
  /** `--! RunIf: conditions/<name>.sql`: the condition file, relative to the migrations folder. */
  runIf: string | null;
}

function readMigration(fullPath: string, file: string): Migration & { allowInvalidHash: boolean } {
  const { headers, body } = parseMigrationText(fullPath, readFileSync(fullPath, "utf8"));
  const previous = headers.Previous;
  const hash = headers.Hash;
  if (!previous || !hash) throw new Error(`Invalid committed migration '${fullPath}': no 'Previous' or 'Hash' header`);
  return {
    file,
    filename: `${file.slice(0, 6)}.sql`,
    hash,
    previousHash: previous === "-" ? null : previous,
    body,
    transaction: !isNoTransactionDefined(body),
    runIf: headers.RunIf ?? null,
    allowInvalidHash: "AllowInvalidHash" in headers,
  };
}

/**
 * The committed migrations in order, each checked as graphile-migrate checks
 * them: its hash is its body's, and its Previous is the hash before it. With
 * `major` below 12, a file of migrations/compat/pg10-11 stands in for its
 * original up to 000008: under the original's headers (so the ledger records
 * the same chain), with graphile-migrate's AllowInvalidHash.
 */
export function loadMigrations(migrationsFolder = path.join(packageRoot, "migrations"), major = 99): Migration[] {
  const committed = path.join(migrationsFolder, "committed");
  const compat = path.join(packageRoot, "migrations", "compat", "pg10-11");
  const out: Migration[] = [];
  let previous: string | null = null;
  for (const file of readdirSync(committed).filter((f) => /^\d{6}(-[-_a-zA-Z0-9]*)?\.sql$/.test(f)).sort()) {
    const m = readMigration(path.join(committed, file), file);
    if (m.previousHash !== previous) {
      throw new Error(`${file}: its Previous header (${m.previousHash}) is not the hash of the migration before it (${previous})`);
    }
    if (m.allowInvalidHash || calculateHash(m.body, m.previousHash) !== m.hash) {
      throw new Error(`${file}: its body does not match its Hash header; has the file been altered?`);
    }
    let run: Migration = m;
    if (major < 12 && file.slice(0, 6) <= COMPAT_LAST && existsSync(path.join(compat, file))) {
      const c = readMigration(path.join(compat, file), file);
      if (c.hash !== m.hash || c.previousHash !== m.previousHash || c.transaction !== m.transaction || !c.allowInvalidHash) {
        throw new Error(`migrations/compat/pg10-11/${file} does not stand for ${file}: the headers must be the original's, plus AllowInvalidHash`);
      }
      run = { ...m, body: c.body };
    }
    delete (run as { allowInvalidHash?: boolean }).allowInvalidHash;
    out.push(run);
    previous = m.hash;
  }
  return out;
}

/** rolesync's ledger: graphile-migrate's columns, in schema rolesync. */
export const LEDGER_DDL = `create schema if not exists rolesync;
create table if not exists rolesync.migrations (
  filename text primary key,
  hash text not null unique,
  previous_hash text references rolesync.migrations (hash),
  date timestamptz not null default now()
);
comment on table rolesync.migrations is
  'The migrations rolesync has applied (rolesync migrate, or rolesync.sql with psql): one row each, with graphile-migrate''s file hash.';`;

/** rolesync's (filename, hash) pairs, as a SQL VALUES list. */
function pairsSql(migrations: Migration[]): string {
  return migrations.map((m) => `('${m.filename}', '${m.hash}')`).join(",\n         ");
}

/**
 * True when the objects rolesync's first migrations leave are all in place:
 * the sync and dedupe functions, the guard trigger, the group index, a key,
 * and sync_role_memberships_by_foreign_id() (000008, 0.1.0's last). A row
 * of graphile_migrate.migrations is proof that a migration ran, not that its
 * objects are still there: the hand rollback docs/aleph.md showed before
 * 0.2.0 dropped them and left 0.1.0's rows behind. Adopting those rows then
 * skipped 000001-000008 over a database that had none of their objects.
 */
export const RELEASE_010_INTACT_SQL = `(pg_catalog.to_regprocedure('public.sync_role_memberships(integer, integer[], text)') is not null
     and pg_catalog.to_regprocedure('public.dedupe_role_memberships()') is not null
     and pg_catalog.to_regprocedure('public.sync_role_memberships_by_foreign_id(text, text[], text)') is not null
     and pg_catalog.to_regclass('public.role_membership_group_id_member_id_idx') is not null
     and exists (select from pg_catalog.pg_trigger t
                  where t.tgrelid = pg_catalog.to_regclass('public.role_membership') and t.tgname = 'role_membership_guard')
     and exists (select from pg_catalog.pg_constraint c
                  where c.conrelid = pg_catalog.to_regclass('public.role_membership')
                    and (c.contype = 'p' or c.conname = 'rolesync_role_membership_key')))`;

/**
 * Copies into rolesync.migrations the rows of graphile_migrate.migrations
 * that are rolesync's (the same filename and hash): a database rolesync 0.1.0
 * migrated, or one the development workflow migrated; only while their
 * objects are in place (RELEASE_010_INTACT_SQL), else none, and the chain
 * runs again from 000001. Other rows there are another application's and
 * stay where they are, untouched.
 */
export function adoptSql(migrations: Migration[]): string {
  return `do $$
begin
  if pg_catalog.to_regclass('graphile_migrate.migrations') is not null and ${RELEASE_010_INTACT_SQL} then
    insert into rolesync.migrations (filename, hash, previous_hash, date)
    select g.filename, g.hash, g.previous_hash, g.date
      from graphile_migrate.migrations g
      join (values
         ${pairsSql(migrations)}) as ours (filename, hash)
        on ours.filename = g.filename and ours.hash = g.hash
     where not exists (select from rolesync.migrations r where r.filename = g.filename)
     order by g.filename;
  end if;
end
$$;`;
}

/**
 * The ledger check, in SQL (the psql script's; the runner's is
 * checkLedger): rolesync.migrations must be a prefix of this version's chain.
 * RS013 otherwise, before anything is changed.
 */
export function ledgerCheckSql(migrations: Migration[]): string {
  const last = migrations.at(-1)?.filename ?? "";
  return `do $$
declare
  v_first text;
  v_newer boolean;
  v_rows integer;
  v_last integer;
begin
  if pg_catalog.to_regclass('rolesync.migrations') is null then
    return;
  end if;
  select min(r.filename || ' (' || r.hash || ')'), bool_and(r.filename > '${last}')
    into v_first, v_newer
    from rolesync.migrations r
   where (r.filename, r.hash) not in (values
         ${pairsSql(migrations)});
  if v_first is not null and v_newer then
    raise exception using errcode = 'RS013',
      message = format('this database was migrated by a newer rolesync: rolesync.migrations holds %s, and this script''s migrations end at ${last}', v_first),
      hint = 'Nothing was changed. Apply the rolesync.sql of the version that migrated it, or of a later one.';
  elsif v_first is not null then
    raise exception using errcode = 'RS013',
      message = format('rolesync.migrations does not match this script''s migrations: %s is not one of them', v_first),
      hint = 'Nothing was changed. The ledger or the migrations were altered; compare rolesync.migrations with the files of the version that migrated this database.';
  end if;
  select count(*), coalesce(max(substr(filename, 1, 6)::integer), 0) into v_rows, v_last from rolesync.migrations;
  if v_rows <> v_last then
    raise exception using errcode = 'RS013',
      message = format('rolesync.migrations has %s rows up to migration %s: some are missing', v_rows, v_last),
      hint = 'Nothing was changed. Someone deleted rows of the ledger; restore them from a backup.';
  end if;
end
$$;`;
}

async function resolveAppRole(client: pg.Client, requested: string | undefined): Promise<string> {
  if (!requested) {
    const { rows } = await client.query<{ r: string }>("select quote_ident(current_user) as r");
    return rows[0].r;
  }
  const { rows } = await client.query<{ ok: boolean }>(
    "select pg_catalog.to_regrole($1) is not null as ok",
    [requested],
  );
  if (!rows[0].ok) {
    throw new MigrationError(
      `the application role ${requested} does not exist`,
      "42704",
      "Create it (CREATE ROLE ... ) or set ROLESYNC_APP_ROLE to the role your application connects as.",
    );
  }
  return requested;
}

export interface HookSettings {
  beforeAllMigrations: string[];
  afterAllMigrations: string[];
}

/** The hooks .gmrc names, shared with the development workflow. */
export function hookSettings(): HookSettings {
  const raw = JSON5.parse(readFileSync(path.join(packageRoot, ".gmrc"), "utf8")) as Partial<HookSettings>;
  return { beforeAllMigrations: raw.beforeAllMigrations ?? [], afterAllMigrations: raw.afterAllMigrations ?? [] };
}

/**
 * The ledger names of the migrations this database has: rolesync.migrations,
 * plus rolesync's own rows in graphile_migrate.migrations that a run would
 * adopt (a database 0.1.0 migrated, with its objects in place). Read-only.
 */
export async function appliedMigrations(client: Queryable, migrations = loadMigrations()): Promise<Map<string, string>> {
  const applied = new Map<string, string>();
  const { rows: t } = await client.query<{ own: boolean; gm: boolean }>(
    `select pg_catalog.to_regclass('rolesync.migrations') is not null as own,
            pg_catalog.to_regclass('graphile_migrate.migrations') is not null as gm`,
  );
  if (t[0].own) {
    const { rows } = await client.query<{ filename: string; hash: string }>("select filename, hash from rolesync.migrations");
    for (const r of rows) applied.set(r.filename, r.hash);
  }
  if (t[0].gm && (await client.query<{ ok: boolean }>(`select ${RELEASE_010_INTACT_SQL} as ok`)).rows[0].ok) {
    const ours = new Map(migrations.map((m) => [m.filename, m.hash]));
    const { rows } = await client.query<{ filename: string; hash: string }>("select filename, hash from graphile_migrate.migrations");
    for (const r of rows) if (ours.get(r.filename) === r.hash && !applied.has(r.filename)) applied.set(r.filename, r.hash);
  }
  return new Map([...applied].sort(([a], [b]) => a.localeCompare(b)));
}

/** rolesync's own rows in graphile_migrate.migrations (same filename and hash), whatever the catalog holds. */
async function ledgerRowsOf010(client: Queryable, migrations: Migration[]): Promise<string[]> {
  const { rows: t } = await client.query<{ gm: boolean }>(
    "select pg_catalog.to_regclass('graphile_migrate.migrations') is not null as gm",
  );
  if (!t[0].gm) return [];
  const ours = new Map(migrations.map((m) => [m.filename, m.hash]));
  const { rows } = await client.query<{ filename: string; hash: string }>("select filename, hash from graphile_migrate.migrations");
  return rows.filter((r) => ours.get(r.filename) === r.hash).map((r) => r.filename).sort();
}

/** RS013 unless the applied migrations are a prefix of this version's chain. */
function checkLedger(applied: Map<string, string>, migrations: Migration[]): void {
  const ours = new Map(migrations.map((m) => [m.filename, m.hash]));
  const last = migrations.at(-1)?.filename ?? "";
  const foreign = [...applied].filter(([f, h]) => ours.get(f) !== h);
  if (foreign.length && foreign.every(([f]) => f > last)) {
    throw new MigrationError(
      `this database was migrated by a newer rolesync: rolesync.migrations goes on to ${foreign.at(-1)![0]}, ` +
        `this version's migrations end at ${last}`,
      "RS013",
      "Nothing was changed. Run the `rolesync migrate` of the version that migrated it, or a later one.",
    );
  }
  if (foreign.length) {
    throw new MigrationError(
      `rolesync.migrations does not match this version's migrations: ${foreign[0][0]} (${foreign[0][1]}) is not one of them`,
      "RS013",
      "Nothing was changed. The ledger or the migrations were altered; compare rolesync.migrations with the files of the version that migrated this database.",
    );
  }
  const missing = migrations.slice(0, applied.size).find((m) => !applied.has(m.filename));
  if (missing) {
    throw new MigrationError(
      `rolesync.migrations has ${applied.size} rows but not ${missing.filename}: some are missing`,
      "RS013",
      "Nothing was changed. Someone deleted rows of the ledger; restore them from a backup.",
    );
  }
}

export interface MigrateResult {
  /** The migrations this run recorded, in order (a RunIf migration whose condition was false included). */
  executed: string[];
  /** Those of them whose condition said there was nothing to do: recorded, not run. */
  skipped: string[];
  /** How long each took (the last attempt of each, after any lock-timeout retries). */
  steps: { name: string; seconds: number }[];
  /** What the hooks did (a run with no migration pending may still drop a redundant key). */
  hooks: HookAction[];
}

/** Placeholders, as graphile-migrate fills them. */
function fill(sql: string, appRole: string): string {
  return sql.replace(/:ROLESYNC_APP_ROLE\b/g, appRole);
}

/** A hook or a migration body: in its own transaction unless it starts with `--! no-transaction`. */
async function runSql(client: pg.Client, sql: string, transaction: boolean, after?: (c: pg.Client) => Promise<void>) {
  if (!transaction) {
    await client.query(sql);
    if (after) await after(client);
    return;
  }
  await client.query("begin");
  try {
    await client.query(sql);
    if (after) await after(client);
    await client.query("commit");
  } catch (e) {
    await client.query("rollback").catch(() => {});
    throw e;
  }
}

class Busy extends Error {}

/**
 * How long to wait before retry `attempt` after a lock timeout (55P03) or a
 * busy advisory lock: exponential from 0.4 s, capped at 5 s, jittered by
 * ±50% so that two waiting runs do not retry in step. Shared by migrate and
 * uninstall.
 */
export function lockRetryDelayMs(attempt: number): number {
  return Math.min(200 * 2 ** Math.min(attempt, 5), 5000) * (0.5 + Math.random());
}

export async function runMigrations(opts: MigrateOptions): Promise<MigrateResult> {
  const emit = opts.onEvent ?? (() => {});
  const url = withApplicationName(opts.databaseUrl, APPLICATION_NAME);
  const folder = opts.migrationsFolder ?? path.join(packageRoot, "migrations");
  const hooks = hookSettings();
  const started = Date.now();
  const appRole = await withClient(url, (c) => resolveAppRole(c, opts.appRole), opts.clientOptions);
  emit({ type: "start", appRole });

  const executed: string[] = [];
  const skipped: string[] = [];
  const hookActions: HookAction[] = [];
  // When each migration last started; a step ends when the next one starts (or the run ends).
  const startedAt = new Map<string, number>();
  const retries = opts.lockRetries ?? 30;

  for (let attempt = 1; ; attempt++) {
    const stopWatching = watchProgress(opts.databaseUrl, APPLICATION_NAME, opts.progressIntervalMs ?? 1000, (p) =>
      emit({ type: "progress", ...p }),
    );
    try {
      await withClient(url, (c) => migrateOnce(c), opts.clientOptions);
      await stopWatching();
      break;
    } catch (e) {
      await stopWatching();
      const err = e as { code?: string; message: string; hint?: string };
      if (e instanceof MigrationError) throw e;
      const lockTimeout = err.code === "55P03";
      const busy = e instanceof Busy;
      if ((lockTimeout || busy) && attempt <= retries) {
        const delayMs = lockRetryDelayMs(attempt);
        emit({
          type: "retry",
          attempt,
          delayMs: Math.round(delayMs),
          reason: lockTimeout
            ? "a lock on role_membership was not granted within lock_timeout (a long transaction holds it)"
            : "another rolesync migration is running",
        });
        await sleep(delayMs);
        continue;
      }
      throw new MigrationError(
        err.message,
        err.code,
        err.hint ??
          (lockTimeout
            ? "A long-running transaction keeps role_membership locked: find it in pg_stat_activity, end it, and run the migration again."
            : busy
              ? "Another `rolesync migrate` (or rolesync.sql) is running on this database: wait for it, then run this one again."
              : undefined),
      );
    }
  }
  const ended = Date.now();
  const steps = executed.map((name, i) => ({
    name,
    seconds: ((i + 1 < executed.length ? startedAt.get(executed[i + 1])! : ended) - startedAt.get(name)!) / 1000,
  }));
  emit({ type: "done", executed, seconds: (ended - started) / 1000, steps, hooks: hookActions });
  return { executed, skipped, steps, hooks: hookActions };

  async function migrateOnce(c: pg.Client): Promise<void> {
    // Set on the connection, "off" included, so that only this option opts
    // in, not a database or role default (such as the one db:reset leaves).
    await c.query("select pg_catalog.set_config($1, $2, false)", [
      CREATE_ALEPH_SCHEMA_SETTING,
      opts.createAlephSchema ? "on" : "off",
    ]);
    await c.query(SUPPORTED_MAJORS_SQL);
    await setMaintenanceWorkMem(c, opts.maintenanceWorkMem);
    const { rows: v } = await c.query<{ major: number }>(
      "select current_setting('server_version_num')::integer / 10000 as major",
    );
    const migrations = loadMigrations(folder, v[0].major);
    const { rows: l } = await c.query<{ locked: boolean }>("select pg_try_advisory_lock($1) as locked", [ADVISORY_LOCK]);
    if (!l[0].locked) throw new Busy("another rolesync migration holds the lock");
    try {
      checkLedger(await appliedMigrations(c, migrations), migrations);
      for (const file of hooks.beforeAllMigrations) await runHook(c, file);

      const ledger = async (): Promise<string[]> => {
        const { rows: t } = await c.query<{ ok: boolean }>("select pg_catalog.to_regclass('rolesync.migrations') is not null as ok");
        if (!t[0].ok) return [];
        return (await c.query<{ filename: string }>("select filename from rolesync.migrations")).rows.map((r) => r.filename);
      };
      const own = new Set(await ledger());
      const offered = await ledgerRowsOf010(c, migrations);
      await runSql(c, `${LEDGER_DDL}\n${adoptSql(migrations)}`, true);
      const applied = new Set(await ledger());
      const adopted = [...applied].filter((f) => !own.has(f));
      if (adopted.length) emit({ type: "adopted", filenames: adopted });
      const refused = offered.filter((f) => !applied.has(f));
      if (refused.length) {
        emit({
          type: "not-adopted",
          filenames: refused,
          reason: "their objects are gone (rolled back by hand), so they run again",
        });
      }

      for (const m of migrations) {
        if (applied.has(m.filename)) continue;
        startedAt.set(m.file, Date.now());
        if (!executed.includes(m.file)) executed.push(m.file);
        const record = async (client: pg.Client) => {
          await client.query("insert into rolesync.migrations (filename, hash, previous_hash) values ($1, $2, $3)", [
            m.filename,
            m.hash,
            m.previousHash,
          ]);
        };
        if (m.runIf && !(await condition(c, path.join(folder, m.runIf)))) {
          emit({ type: "skipped", name: m.file, reason: conditionReason(path.join(folder, m.runIf)) });
          if (!skipped.includes(m.file)) skipped.push(m.file);
          await runSql(c, "select 1", true, record);
          continue;
        }
        emit({ type: "migration", name: m.file });
        await runSql(c, fill(m.body, appRole), m.transaction, record);
      }

      for (const file of hooks.afterAllMigrations) await runHook(c, file);
    } finally {
      await c.query("select pg_advisory_unlock($1)", [ADVISORY_LOCK]).catch(() => {});
    }
  }

  /**
   * Runs a hook, and reports what it did: each RAISE NOTICE of its own
   * (PL/pgSQL's, not a server's "already exists, skipping"), once its
   * transaction committed. A hook run again by a retry reports an action
   * once.
   */
  async function runHook(c: pg.Client, file: string): Promise<void> {
    const sql = fill(readFileSync(path.join(folder, file), "utf8"), appRole);
    const did: string[] = [];
    const listen = (n: { message?: string; where?: string }) => {
      if (n.message && /\bat RAISE\b/.test(n.where ?? "")) did.push(n.message);
    };
    c.on("notice", listen);
    try {
      await runSql(c, sql, !isNoTransactionDefined(sql));
    } finally {
      c.off("notice", listen);
    }
    const name = path.basename(file);
    for (const d of did) {
      if (hookActions.some((a) => a.file === name && a.did === d)) continue;
      hookActions.push({ file: name, did: d });
      emit({ type: "hook", file: name, did: d });
    }
  }
}

/**
 * The session's maintenance_work_mem: as given, or at least the default
 * (a server set higher keeps its setting), or untouched for "server". A size
 * PostgreSQL refuses (22023, or 22003 out of range) fails before anything
 * runs, with PostgreSQL's message and a hint about this setting.
 */
async function setMaintenanceWorkMem(c: pg.Client, requested: string | undefined): Promise<void> {
  if (requested === "server") return;
  const sql =
    requested !== undefined
      ? "select pg_catalog.set_config('maintenance_work_mem', $1, false)"
      : `select pg_catalog.set_config('maintenance_work_mem', $1, false)
           where pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem')) < pg_catalog.pg_size_bytes($1)`;
  try {
    await c.query(sql, [requested ?? DEFAULT_MAINTENANCE_WORK_MEM]);
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (requested === undefined || (err.code !== "22023" && err.code !== "22003")) throw e;
    throw new MigrationError(
      err.message ?? String(e),
      err.code,
      `Give maintenance_work_mem a size PostgreSQL accepts, such as 256MB or 1GB ` +
        `(units kB, MB, GB, TB; at least 1MB), or "server" to keep the server's own setting. Nothing was changed.`,
    );
  }
}

/** Runs a RunIf condition file, which sets rolesync.run_migration to on or off. */
export async function condition(c: Queryable, file: string): Promise<boolean> {
  await c.query("select pg_catalog.set_config($1, '', false)", [RUN_IF_SETTING]);
  await c.query(readFileSync(file, "utf8"));
  const { rows } = await c.query<{ v: string }>("select current_setting($1) as v", [RUN_IF_SETTING]);
  if (rows[0].v !== "on" && rows[0].v !== "off") {
    throw new Error(`${file} must set ${RUN_IF_SETTING} to on or off, not '${rows[0].v}'`);
  }
  return rows[0].v === "on";
}

/** Why a RunIf migration had nothing to do: its condition file's `-- Skipped: …` line. */
export function conditionReason(file: string): string {
  const text = readFileSync(file, "utf8");
  return /^\s*\*?\s*Skipped:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? `not needed here (${path.basename(file)})`;
}
