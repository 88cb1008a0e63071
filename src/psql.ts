/*
 * `rolesync sql`: every migration `rolesync migrate` applies, as one psql
 * script, for operators with psql and no Node.js.
 *
 * The script does what the runner (src/migrate.ts) does, in the same order,
 * from the same SQL where the two share it:
 * - the ledger check (RS013), before anything is changed;
 * - the beforeAllMigrations hooks (.gmrc), the invalid-index one included;
 * - rolesync.migrations created, 0.1.0's rows adopted from graphile-migrate's;
 * - each committed migration not yet in rolesync.migrations: a transactional
 *   one inside its own BEGIN … COMMIT with its ledger row (each sets its own
 *   lock_timeout), a no-transaction one (CREATE INDEX CONCURRENTLY, VACUUM)
 *   alone, then its row; one with a RunIf header only where its condition
 *   file says so, recorded either way;
 * - on PostgreSQL 10 and 11, the versions in migrations/compat/pg10-11
 *   where they exist, as the runner does;
 * - the afterAllMigrations hooks.
 * It takes rolesync's advisory lock, so it never runs beside `rolesync
 * migrate`. Run again, it applies only what is missing. The app role comes
 * from `-v app_role=…`, else the connecting user.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  ADVISORY_LOCK,
  SUPPORTED_MAJORS_SQL,
  adoptSql,
  DEFAULT_MAINTENANCE_WORK_MEM,
  hookSettings,
  LEDGER_DDL,
  ledgerCheckSql,
  loadMigrations,
  packageRoot,
  RUN_IF_SETTING,
  conditionReason,
  type Migration,
} from "./migrate.ts";
import { ALEMBIC_LINE_CONDITION, ALEMBIC_LINE_SETTING, planArguments, uninstallPlanSql } from "./uninstall.ts";

/** Placeholders become psql variables; psql leaves quoted and dollar-quoted text alone. */
function substitute(sql: string): string {
  return sql.replace(/:ROLESYNC_APP_ROLE\b/g, ':"app_role"');
}

/** The refusal of psql -1, which CREATE INDEX CONCURRENTLY cannot run in. */
function refuseSingleTransaction(script: string, concurrent: string): string[] {
  return [
    "-- Refuse psql -1: a statement's own transaction starts with it; psql -1's began earlier.",
    "select transaction_timestamp() <> statement_timestamp() as rolesync_in_transaction \\gset",
    "\\if :rolesync_in_transaction",
    `do $$ begin raise exception using errcode = '25001',
  message = '${script} cannot run inside one transaction (psql -1, --single-transaction)',
  hint = '${concurrent} cannot run in a transaction block. Run it without -1: each step has its own transaction, and a second run resumes where the first stopped.';
end $$;`,
    "\\endif",
  ];
}

/** The server's major, and the application role (psql's app_role variable, a role name). */
function preconditions(): string[] {
  return [
    SUPPORTED_MAJORS_SQL,
    "select exists (select from pg_catalog.pg_roles where rolname = :'app_role') as rolesync_app_role_exists \\gset",
    "\\if :rolesync_app_role_exists",
    "\\else",
    "select pg_catalog.set_config('rolesync.app_role', :'app_role', false) as rolesync_ignored \\gset",
    `do $$ begin raise exception using errcode = '42704',
  message = pg_catalog.format('the application role %s does not exist', pg_catalog.current_setting('rolesync.app_role')),
  hint = 'Nothing was changed. Create it (CREATE ROLE ...), or name the role your application connects as: -v app_role=<role>.';
end $$;`,
    "\\endif",
  ];
}

/** A migration's body and its ledger row: in one transaction, or (no-transaction) the body alone, then the row. */
function step(m: Migration): string[] {
  const ledger =
    "insert into rolesync.migrations (filename, hash, previous_hash) " +
    `values ('${m.filename}', '${m.hash}', ${m.previousHash ? `'${m.previousHash}'` : "null"});`;
  return m.transaction
    ? ["begin;", substitute(m.body).trimEnd(), ledger, "commit;"]
    : [substitute(m.body).trimEnd(), ledger];
}

export interface ScriptOptions {
  version: string;
  /** The command that made the script, for its header. */
  command: string;
  migrationsFolder?: string;
}

export function psqlScript(opts: ScriptOptions): string {
  const folder = opts.migrationsFolder ?? path.join(packageRoot, "migrations");
  const hooks = hookSettings();
  const migrations = loadMigrations(folder);
  // PostgreSQL 10 and 11 run migrations/compat/pg10-11 where it has a file.
  const old = new Map(loadMigrations(folder, 11).map((m) => [m.filename, m]));
  // A hook says what it did in RAISE NOTICE: shown. A migration's server notices are not ("relation
  // "role" already exists, skipping" from 000001 reads as if it created Aleph's tables), unless the
  // migration raises its own.
  const notices = (sql: string) => `set client_min_messages = ${/\braise\s+notice\b/i.test(sql) ? "notice" : "warning"};`;
  const hook = (file: string) => {
    const sql = substitute(readFileSync(path.join(folder, file), "utf8")).trimEnd();
    return [`\\echo rolesync: hook ${file}`, notices(sql), sql];
  };

  const out: string[] = [
    `-- rolesync ${opts.version}: every migration \`rolesync migrate\` applies, as one psql script.`,
    `-- Made by: ${opts.command}`,
    "--",
    '-- Apply:  psql -v ON_ERROR_STOP=1 -v app_role=<your app\'s role> -f rolesync.sql "$DATABASE_URL"',
    "--   app_role is granted EXECUTE on the functions and the table privileges they",
    "--   use; without it, the connecting user. Run as the owner of Aleph's tables.",
    "-- Run it again at any time: it applies only what is missing, and records each",
    "-- migration in rolesync.migrations, as `rolesync migrate` does (a database",
    "-- rolesync 0.1.0 migrated has its rows adopted from graphile_migrate.migrations;",
    "-- another application's rows there are left alone).",
    "-- Not with psql -1 (--single-transaction), which it refuses (25001): CREATE INDEX",
    "-- CONCURRENTLY and VACUUM cannot run in a transaction. If it stops on 55P03 (lock_timeout: a long",
    "-- transaction held role_membership), run it again: it resumes where it stopped.",
    "-- A database without Aleph's tables is refused (RS012); for a standalone one:",
    "--   PGOPTIONS='-c rolesync.create_aleph_schema=on' psql … -f rolesync.sql",
    "",
    "\\set ON_ERROR_STOP on",
    "-- Quiet: no command tags (CREATE TABLE, DO ...), only a `rolesync: <step>` line per step,",
    "-- what rolesync's hooks and migrations did (NOTICE), warnings and errors.",
    "\\set QUIET on",
    ...refuseSingleTransaction("rolesync.sql", "CREATE INDEX CONCURRENTLY and VACUUM"),
    "\\if :{?app_role}",
    "\\else",
    "select current_user as app_role \\gset",
    "\\endif",
    "-- Preconditions, before anything changes, as `rolesync migrate` checks them: a supported",
    "-- server, and the application role (the hooks below refuse a database without Aleph's tables).",
    ...preconditions(),
    "set application_name = 'rolesync-sql';",
    "-- rolesync's lock, the one `rolesync migrate` takes: never two at once.",
    `select pg_try_advisory_lock(${ADVISORY_LOCK}) as rolesync_locked \\gset`,
    "\\if :rolesync_locked",
    "\\else",
    `do $$ begin raise exception using errcode = '55P03',
  message = 'another rolesync migration (rolesync migrate, or this script) is running on this database',
  hint = 'Wait for it to finish, then run this script again.';
end $$;`,
    "\\endif",
    "select current_setting('server_version_num')::integer >= 120000 as rolesync_pg12 \\gset",
    `-- Memory for each index build: -v maintenance_work_mem=1GB, else at least ${DEFAULT_MAINTENANCE_WORK_MEM}`,
    "-- (a server set higher keeps its own), as `rolesync migrate` does.",
    "\\if :{?maintenance_work_mem}",
    "select pg_catalog.set_config('maintenance_work_mem', :'maintenance_work_mem', false) as rolesync_mwm \\gset",
    "\\else",
    `select coalesce((select pg_catalog.set_config('maintenance_work_mem', '${DEFAULT_MAINTENANCE_WORK_MEM}', false)
                   where pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem')) < pg_catalog.pg_size_bytes('${DEFAULT_MAINTENANCE_WORK_MEM}')),
                 pg_catalog.current_setting('maintenance_work_mem')) as rolesync_mwm \\gset`,
    "\\endif",
    "",
    "-- The ledger must be a prefix of this script's migrations (RS013), before anything is changed.",
    ledgerCheckSql(migrations),
    "",
  ];
  for (const file of hooks.beforeAllMigrations) out.push(...hook(file), "");
  out.push(
    "-- rolesync's ledger; rolesync's own rows of graphile_migrate.migrations (0.1.0's) adopted.",
    "set client_min_messages = warning;",
    "begin;",
    LEDGER_DDL,
    adoptSql(migrations),
    "commit;",
    "",
  );

  for (const m of migrations) {
    out.push(
      `-- ${m.file}`,
      `select not exists (select from rolesync.migrations where filename = '${m.filename}') as rolesync_run \\gset`,
      "\\if :rolesync_run",
    );
    const body = (x: Migration) => {
      if (!x.runIf) return [`\\echo rolesync: ${x.file}`, notices(x.body), ...step(x)];
      const cond = path.join(folder, x.runIf);
      return [
        `-- Runs only where ${x.runIf} says so; recorded either way.`,
        readFileSync(cond, "utf8").trimEnd(),
        `select current_setting('${RUN_IF_SETTING}')::boolean as rolesync_body \\gset`,
        "\\if :rolesync_body",
        `\\echo rolesync: ${x.file}`,
        notices(x.body),
        ...step(x),
        "\\else",
        `\\echo rolesync: ${x.file}: nothing to do, ${conditionReason(cond)} (recorded)`,
        `insert into rolesync.migrations (filename, hash, previous_hash) values ('${x.filename}', '${x.hash}', ${x.previousHash ? `'${x.previousHash}'` : "null"});`,
        "\\endif",
      ];
    };
    const o = old.get(m.filename)!;
    if (o.body !== m.body) {
      out.push("\\if :rolesync_pg12", ...body(m), "\\else", `-- PostgreSQL 10 and 11: migrations/compat/pg10-11/${m.file}`, ...body(o), "\\endif");
    } else {
      out.push(...body(m));
    }
    out.push("\\endif", "");
  }

  for (const file of hooks.afterAllMigrations) out.push(...hook(file), "");
  out.push(`select pg_advisory_unlock(${ADVISORY_LOCK}) as rolesync_unlocked \\gset`, "\\echo rolesync: done", "");
  return out.join("\n");
}

/**
 * `rolesync sql --uninstall`: what `rolesync uninstall` does, as one psql
 * script, from the same plan (migrations/uninstall/plan.sql): the plan
 * function is created for the session, then each phase's statements are
 * run with \\gexec, the transaction's inside BEGIN … COMMIT with
 * lock_timeout 1s. -v dry_run=on prints the plan and changes nothing;
 * -v drop_archive=on drops the archive too. If it stops on 55P03, nothing of
 * that transaction was changed: run it again.
 */
export function uninstallScript(opts: ScriptOptions): string {
  const args = planArguments();
  const array = (xs: string[]) => `'${`{${xs.map((x) => `"${x}"`).join(",")}}`}'::text[]`;
  const call = `pg_temp.rolesync_uninstall_plan(:'drop_archive'::boolean, :'rolesync_alembic_line',
       ${array(args.filenames)},
       ${array(args.hashes)},
       ${array(args.publicNames)})`;
  const out: string[] = [
    `-- rolesync ${opts.version}: \`rolesync uninstall\`, as one psql script.`,
    `-- Made by: ${opts.command}`,
    "--",
    '-- Apply:   psql -v ON_ERROR_STOP=1 -f rolesync-uninstall.sql "$DATABASE_URL"',
    "-- Look:    psql -v ON_ERROR_STOP=1 -v dry_run=on -f rolesync-uninstall.sql \"$DATABASE_URL\"",
    "-- Archive: -v drop_archive=on drops rolesync.role_membership_removed too (kept by default).",
    "-- Run as the owner of Aleph's tables, after turning off whatever calls rolesync's functions.",
    "-- It takes out what rolesync added and keeps a key on role_membership: Aleph's primary key",
    "-- where Aleph's Alembic declares it, else rolesync_role_membership_key (run the script again",
    "-- after Aleph's 4.1 upgrade). Only privileges rolesync recorded as its own are revoked.",
    "-- If it stops on 55P03 (lock_timeout: a long transaction held role_membership), nothing of",
    "-- that step was changed: run it again. Run again at any time, it does only what is left.",
    "",
    "\\set ON_ERROR_STOP on",
    ...refuseSingleTransaction("rolesync-uninstall.sql", "CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY"),
    "\\if :{?dry_run}",
    "\\else",
    "\\set dry_run off",
    "\\endif",
    "\\if :{?drop_archive}",
    "\\else",
    "\\set drop_archive off",
    "\\endif",
    SUPPORTED_MAJORS_SQL,
    "set application_name = 'rolesync-uninstall';",
    "-- rolesync's lock, the one `rolesync migrate` takes: never beside a migration.",
    `select pg_try_advisory_lock(${ADVISORY_LOCK}) as rolesync_locked \\gset`,
    "\\if :rolesync_locked",
    "\\else",
    `do $$ begin raise exception using errcode = '55P03',
  message = 'a rolesync migration (rolesync migrate, or rolesync.sql) is running on this database',
  hint = 'Nothing was changed. Wait for it to finish, then run this script again.';
end $$;`,
    "\\endif",
    "",
    "-- The plan (migrations/uninstall/plan.sql), for this session only.",
    uninstallPlanSql().trimEnd(),
    "",
    "-- Whose key role_membership keeps: whose Alembic chain the database follows.",
    readFileSync(ALEMBIC_LINE_CONDITION, "utf8").trimEnd(),
    `select pg_catalog.current_setting('${ALEMBIC_LINE_SETTING}') as rolesync_alembic_line \\gset`,
    "",
    "\\echo rolesync: what stays",
    `select why as kept from ${call} where phase = 'keep' order by step;`,
    "\\if :dry_run",
    "\\echo rolesync: dry run: the statements it would run, in order (nothing is changed)",
    `select phase, statement, why from ${call}
 where phase <> 'keep' order by case phase when 'prepare' then 0 when 'transaction' then 1 else 2 end, step;`,
    "\\else",
    "\\echo rolesync: index builds, without blocking writers",
    `select statement from ${call} where phase = 'prepare' order by step \\gexec`,
    "\\echo rolesync: one transaction, lock_timeout 1s",
    "begin;",
    "set local lock_timeout = '1s';",
    `select statement from ${call} where phase = 'transaction' order by step \\gexec`,
    "commit;",
    "\\echo rolesync: the group index, without blocking writers",
    `select statement from ${call} where phase = 'concurrent' order by step \\gexec`,
    "\\echo rolesync: uninstalled",
    "\\endif",
    `select pg_advisory_unlock(${ADVISORY_LOCK}) as rolesync_unlocked \\gset`,
    "",
  ];
  return out.join("\n");
}
