/*
 * Applies the committed migrations with graphile-migrate's API (version
 * pinned in package.json: the API is undocumented), using the settings in
 * .gmrc. Adds what an operator needs around it:
 * - the :ROLESYNC_APP_ROLE placeholder, defaulting to the connecting user;
 * - retries when a strong lock could not be taken within lock_timeout
 *   (SQLSTATE 55P03), so the migration never holds logins up for long;
 * - progress of the long steps, read from pg_stat_progress_create_index and
 *   pg_stat_activity on a second connection;
 * - the opt-in for a standalone database (createAlephSchema), passed to the
 *   hook migrations/hooks/aleph-tables.sql as the session setting
 *   rolesync.create_aleph_schema on every connection graphile-migrate opens.
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import JSON5 from "json5";
import pg from "pg";
import { migrate, Logger } from "graphile-migrate";
import { watchProgress, withApplicationName } from "./progress.ts";
import { withClient } from "./pg.ts";
// Not in graphile-migrate's public API (the version is pinned): its pools
// otherwise linger for 200 ms, and if the database is dropped meanwhile the
// idle connection's error makes graphile-migrate call process.exit(1).
import { clearAllPools } from "graphile-migrate/dist/pgReal.js";

export const packageRoot = fileURLToPath(new URL("..", import.meta.url));
const APPLICATION_NAME = "rolesync-migrate";
/** The session setting migrations/hooks/aleph-tables.sql reads; plain SQL sets it with SET. */
const CREATE_ALEPH_SCHEMA_SETTING = "rolesync.create_aleph_schema";

export type MigrateEvent =
  | { type: "start"; appRole: string }
  | { type: "migration"; name: string }
  | { type: "retry"; attempt: number; delayMs: number; reason: string }
  | { type: "progress"; step: string; seconds: number; detail: string }
  | { type: "done"; executed: string[]; seconds: number; steps: { name: string; seconds: number }[] };

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
  /**
   * The folder holding committed/ and hooks/ (default: this package's
   * migrations/). The upgrade tests point it at a copy holding an earlier
   * release's migrations.
   */
  migrationsFolder?: string;
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

function gmrcSettings(): Record<string, unknown> {
  const raw = JSON5.parse(readFileSync(path.join(packageRoot, ".gmrc"), "utf8")) as Record<string, unknown>;
  return raw;
}

export interface MigrateResult {
  /** The migrations applied by this run, in order. */
  executed: string[];
  /** How long each took (the last attempt of each, after any lock-timeout retries). */
  steps: { name: string; seconds: number }[];
}

export async function runMigrations(opts: MigrateOptions): Promise<MigrateResult> {
  const emit = opts.onEvent ?? (() => {});
  const url = withApplicationName(opts.databaseUrl, APPLICATION_NAME);
  const started = Date.now();
  const appRole = await withClient(url, (c) => resolveAppRole(c, opts.appRole));
  emit({ type: "start", appRole });

  const executed: string[] = [];
  // When each migration last started; a step ends when the next one starts (or the run ends).
  const startedAt = new Map<string, number>();
  const logger = new Logger(() => (level, message) => {
    const m = /Running migration '([^']+)'/.exec(message);
    if (m) {
      startedAt.set(m[1], Date.now());
      if (!executed.includes(m[1])) executed.push(m[1]);
      emit({ type: "migration", name: m[1] });
    }
    // Other lines (errors included) reach the caller as the thrown error.
    void level;
  });
  const gmrc = gmrcSettings();
  const settings = {
    ...gmrc,
    connectionString: url,
    migrationsFolder: opts.migrationsFolder ?? path.join(packageRoot, "migrations"),
    placeholders: { ...(gmrc.placeholders as object), ":ROLESYNC_APP_ROLE": appRole },
    // Set on each connection, "off" included, so that only this option opts
    // in, not a database or role default (such as the one db:reset leaves).
    pgSettings: {
      ...(gmrc.pgSettings as object),
      [CREATE_ALEPH_SCHEMA_SETTING]: opts.createAlephSchema ? "on" : "off",
    },
    logger,
  };

  const retries = opts.lockRetries ?? 30;
  const folder = settings.migrationsFolder;
  const compat = await withClient(url, async (c) => {
    await refuseForeignLedger(c, folder);
    return compatFolder(c, folder);
  });
  try {
    for (const migrationsFolder of compat ? [compat, folder] : [folder]) {
      await migrateFolder({ ...settings, migrationsFolder });
    }
  } finally {
    if (compat) rmSync(compat, { recursive: true, force: true });
  }
  const ended = Date.now();
  const steps = executed.map((name, i) => ({
    name,
    seconds: ((i + 1 < executed.length ? startedAt.get(executed[i + 1])! : ended) - startedAt.get(name)!) / 1000,
  }));
  emit({ type: "done", executed, seconds: (ended - started) / 1000, steps });
  return { executed, steps };

  async function migrateFolder(settings: Record<string, unknown>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const stopWatching = watchProgress(opts.databaseUrl, APPLICATION_NAME, opts.progressIntervalMs ?? 1000, (p) =>
        emit({ type: "progress", ...p }),
      );
      try {
        // forceActions: the hooks run on every run, so that a key Aleph's own
        // upgrade added since the last run replaces rolesync's (hooks/drop-redundant-key.sql).
        await migrate(settings, false, true);
        await stopWatching();
        clearAllPools();
        break;
      } catch (e) {
        await stopWatching();
        clearAllPools();
        const err = e as { code?: string; message: string; hint?: string };
        const lockTimeout = err.code === "55P03";
        const busy = /Failed to get exclusive lock/.test(err.message);
        if ((lockTimeout || busy) && attempt <= retries) {
          const delayMs = Math.min(200 * 2 ** Math.min(attempt, 5), 5000) * (0.5 + Math.random());
          emit({
            type: "retry",
            attempt,
            delayMs: Math.round(delayMs),
            reason: lockTimeout
              ? "a lock on role_membership was not granted within lock_timeout (a long transaction holds it)"
              : "another migration is running",
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
              : undefined),
        );
      }
    }
  }
}

/** Each committed migration's ledger name (000001.sql) and hash, as graphile-migrate records them. */
export function committedLedger(migrationsFolder = path.join(packageRoot, "migrations")): Map<string, string> {
  const ledger = new Map<string, string>();
  for (const file of readdirSync(path.join(migrationsFolder, "committed")).sort()) {
    if (!/^\d{6}.*\.sql$/.test(file)) continue;
    const hash = /^--! Hash: (\S+)$/m.exec(readFileSync(path.join(migrationsFolder, "committed", file), "utf8"))?.[1];
    if (hash) ledger.set(`${file.slice(0, 6)}.sql`, hash);
  }
  return ledger;
}

/**
 * graphile-migrate keeps one ledger per database, graphile_migrate.migrations,
 * and runs only files numbered after the last one it recorded. If another
 * application of this database uses graphile-migrate too, its rows are
 * there: rolesync would then run nothing and report success, or start in
 * the middle of its chain; and rolesync's rows would make that application
 * skip its own. So a ledger holding any row that is not one of rolesync's
 * migrations is refused, before anything is changed (RS013).
 */
async function refuseForeignLedger(client: pg.Client, migrationsFolder: string): Promise<void> {
  const { rows: exists } = await client.query<{ ok: boolean }>(
    "select pg_catalog.to_regclass('graphile_migrate.migrations') is not null as ok",
  );
  if (!exists[0].ok) return;
  const ours = committedLedger(migrationsFolder);
  const { rows } = await client.query<{ filename: string; hash: string }>(
    "select filename, hash from graphile_migrate.migrations order by filename",
  );
  const foreign = rows.filter((r) => ours.get(r.filename) !== r.hash);
  if (foreign.length === 0) return;
  const last = [...ours.keys()].pop() ?? "";
  if (foreign.every((r) => r.filename > last)) {
    throw new MigrationError(
      `this database was migrated by a newer rolesync: its ledger goes on to ${foreign.at(-1)!.filename}, ` +
        `this version's migrations end at ${last}`,
      "RS013",
      "Nothing was changed. Run the `rolesync migrate` of the version that migrated it, or a later one.",
    );
  }
  throw new MigrationError(
    `graphile_migrate.migrations belongs to another application: ${foreign.length} of its ${rows.length} ` +
      `migrations are not rolesync's (the first: ${foreign[0].filename}, ${foreign[0].hash})`,
    "RS013",
    "Nothing was changed. rolesync keeps its migrations in graphile-migrate's ledger, and a database has one: " +
      "sharing it with another graphile-migrate application would skip migrations, theirs or rolesync's. " +
      "rolesync cannot be installed in this database until it keeps a ledger of its own.",
  );
}

/** The last migration of 0.1.0's chain, which the versions in migrations/compat/pg10-11 stand in for. */
const COMPAT_LAST = "000008";

/**
 * PostgreSQL 10 and 11 cannot run 0.1.0's migrations 000001-000008 as
 * written (MATERIALIZED, plan_cache_mode and EXECUTE FUNCTION are newer), and
 * those files are released, so they stay as they are. For these servers
 * migrations/compat/pg10-11 holds the files that differ, each under its
 * original's name and headers (so the ledger records the same chain) with
 * graphile-migrate's AllowInvalidHash. This composes a folder of them and
 * the unchanged originals, up to 000008, with the hooks; null when the
 * server is 12+ or the ledger is past 000008.
 */
async function compatFolder(client: pg.Client, migrationsFolder: string): Promise<string | null> {
  const { rows } = await client.query<{ major: number; ledger: boolean }>(
    `select current_setting('server_version_num')::integer / 10000 as major,
            pg_catalog.to_regclass('graphile_migrate.migrations') is not null as ledger`,
  );
  if (rows[0].major >= 12) return null;
  if (rows[0].ledger) {
    const { rows: last } = await client.query<{ filename: string | null }>(
      "select max(filename) as filename from graphile_migrate.migrations",
    );
    if (last[0].filename && last[0].filename >= `${COMPAT_LAST}.sql`) return null;
  }
  const compat = path.join(packageRoot, "migrations", "compat", "pg10-11");
  const dir = mkdtempSync(path.join(tmpdir(), "rolesync-migrations-"));
  mkdirSync(path.join(dir, "committed"));
  for (const file of readdirSync(path.join(migrationsFolder, "committed"))) {
    if (!/^\d{6}/.test(file) || file.slice(0, 6) > COMPAT_LAST) continue;
    const from = existsSync(path.join(compat, file)) ? path.join(compat, file) : path.join(migrationsFolder, "committed", file);
    copyFileSync(from, path.join(dir, "committed", file));
  }
  cpSync(path.join(migrationsFolder, "hooks"), path.join(dir, "hooks"), { recursive: true });
  return dir;
}
