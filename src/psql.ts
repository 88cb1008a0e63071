/*
 * `rolesync sql`: every migration `rolesync migrate` applies, as one psql
 * script, for operators with psql and no Node.js.
 *
 * The script does what the runner does, in the same order:
 * - the beforeAllMigrations hooks (.gmrc), the invalid-index one included;
 * - each committed migration not yet in graphile-migrate's ledger: a
 *   transactional one inside its own BEGIN … COMMIT (each sets its own
 *   lock_timeout), a no-transaction one (CREATE INDEX CONCURRENTLY, VACUUM)
 *   alone; then its row in graphile_migrate.migrations, with the same hash,
 *   so that `rolesync migrate` and `rolesync status` see it applied;
 * - on PostgreSQL 10 and 11, the versions in migrations/compat/pg10-11
 *   where they exist, as the runner does;
 * - the afterAllMigrations hooks.
 * It takes graphile-migrate's advisory lock, so it never runs beside
 * `rolesync migrate`. Run again, it applies only what is missing. The app
 * role comes from `-v app_role=…`, else the connecting user.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import JSON5 from "json5";
import { committedLedger, packageRoot } from "./migrate.ts";

interface Migration {
  file: string;
  number: string;
  hash: string;
  previous: string | null;
  body: string;
  transaction: boolean;
}

/** A committed migration file: graphile-migrate's `--!` headers, a blank line, the body. */
function parse(file: string, text: string): Migration {
  const headers = new Map<string, string>();
  let rest = text;
  for (;;) {
    const m = /^--! (\w+)(?::[ \t]*(.*))?\r?\n/.exec(rest);
    if (!m || m[1] === "no") break;
    headers.set(m[1], m[2] ?? "");
    rest = rest.slice(m[0].length);
  }
  const body = rest.replace(/^\r?\n/, "");
  const hash = headers.get("Hash");
  const previous = headers.get("Previous");
  if (!hash || previous === undefined) throw new Error(`${file}: no Hash or Previous header`);
  return {
    file,
    number: file.slice(0, 6),
    hash,
    previous: previous === "-" ? null : previous,
    body,
    transaction: !/^--! no-transaction\b/.test(body),
  };
}

/** Placeholders become psql variables; psql leaves quoted and dollar-quoted text alone. */
function substitute(sql: string): string {
  return sql.replace(/:ROLESYNC_APP_ROLE\b/g, ':"app_role"');
}

function step(m: Migration, sql: string): string[] {
  const ledger =
    "insert into graphile_migrate.migrations (hash, previous_hash, filename) " +
    `values ('${m.hash}', ${m.previous ? `'${m.previous}'` : "null"}, '${m.number}.sql');`;
  return m.transaction
    ? ["begin;", substitute(sql).trimEnd(), ledger, "commit;"]
    : [substitute(sql.replace(/^--! no-transaction\r?\n/, "")).trimEnd(), ledger];
}

/** The runner's RS013 check (src/migrate.ts), in SQL: rolesync's (filename, hash) pairs are listed. */
function foreignLedgerCheck(folder: string): string {
  const pairs = [...committedLedger(folder)].map(([file, hash]) => `('${file}', '${hash}')`).join(",\n      ");
  return `do $$
declare
  v_count integer;
  v_first text;
begin
  if pg_catalog.to_regclass('graphile_migrate.migrations') is null then
    return;
  end if;
  select count(*), min(m.filename || ', ' || m.hash) into v_count, v_first
    from graphile_migrate.migrations m
   where (m.filename, m.hash) not in (values
      ${pairs});
  if v_count > 0 then
    raise exception using errcode = 'RS013',
      message = format('graphile_migrate.migrations holds %s migration(s) that are not this script''s (the first: %s)', v_count, v_first),
      hint = 'Nothing was changed. Another graphile-migrate application uses this database''s ledger, or a newer rolesync migrated it; rolesync cannot share the ledger with another application.';
  end if;
end
$$;`;
}

export interface ScriptOptions {
  version: string;
  /** The command that made the script, for its header. */
  command: string;
  migrationsFolder?: string;
}

export function psqlScript(opts: ScriptOptions): string {
  const folder = opts.migrationsFolder ?? path.join(packageRoot, "migrations");
  const gmrc = JSON5.parse(readFileSync(path.join(packageRoot, ".gmrc"), "utf8")) as {
    beforeAllMigrations?: string[];
    afterAllMigrations?: string[];
  };
  const compat = path.join(packageRoot, "migrations", "compat", "pg10-11");
  const committed = readdirSync(path.join(folder, "committed"))
    .filter((f) => /^\d{6}.*\.sql$/.test(f))
    .sort();
  const hook = (file: string) => [`\\echo rolesync: hook ${file}`, readFileSync(path.join(folder, file), "utf8").trimEnd()];

  const out: string[] = [
    `-- rolesync ${opts.version}: every migration \`rolesync migrate\` applies, as one psql script.`,
    `-- Made by: ${opts.command}`,
    "--",
    '-- Apply:  psql -v ON_ERROR_STOP=1 -v app_role=<your app\'s role> -f rolesync.sql "$DATABASE_URL"',
    "--   app_role is granted EXECUTE on the functions and the table privileges they",
    "--   use; without it, the connecting user. Run as the owner of Aleph's tables.",
    "-- Run it again at any time: it applies only what is missing, and records each",
    "-- migration in graphile_migrate.migrations, as `rolesync migrate` does.",
    "-- Not with psql -1 (--single-transaction), which it refuses (25001): CREATE INDEX",
    "-- CONCURRENTLY and VACUUM cannot run in a transaction. If it stops on 55P03 (lock_timeout: a long",
    "-- transaction held role_membership), run it again: it resumes where it stopped.",
    "-- A database without Aleph's tables is refused (RS012); for a standalone one:",
    "--   PGOPTIONS='-c rolesync.create_aleph_schema=on' psql … -f rolesync.sql",
    "",
    "\\set ON_ERROR_STOP on",
    "-- Refuse psql -1: a statement's own transaction starts with it; psql -1's began earlier.",
    "select transaction_timestamp() <> statement_timestamp() as rolesync_in_transaction \\gset",
    "\\if :rolesync_in_transaction",
    `do $$ begin raise exception using errcode = '25001',
  message = 'rolesync.sql cannot run inside one transaction (psql -1, --single-transaction)',
  hint = 'CREATE INDEX CONCURRENTLY and VACUUM cannot run in a transaction block. Run it without -1: each step has its own transaction, and a second run resumes where the first stopped.';
end $$;`,
    "\\endif",
    "\\if :{?app_role}",
    "\\else",
    "select current_user as app_role \\gset",
    "\\endif",
    "set application_name = 'rolesync-sql';",
    "-- graphile-migrate's lock: never beside `rolesync migrate`.",
    "select pg_advisory_lock(4727445306447283) as rolesync_locked \\gset",
    "select current_setting('server_version_num')::integer >= 120000 as rolesync_pg12 \\gset",
    "",
    "-- graphile-migrate keeps one ledger per database: refuse one that holds another",
    "-- application's migrations (RS013), before anything is changed.",
    foreignLedgerCheck(folder),
    "",
    "-- graphile-migrate's ledger, as it creates it.",
    "create schema if not exists graphile_migrate;",
    `create table if not exists graphile_migrate.migrations (
  hash text primary key,
  previous_hash text references graphile_migrate.migrations,
  filename text not null,
  date timestamptz not null default now()
);`,
    `create table if not exists graphile_migrate.current (
  filename text primary key default 'current.sql',
  content text not null,
  date timestamptz not null default now()
);`,
    "",
  ];
  for (const file of gmrc.beforeAllMigrations ?? []) out.push(...hook(file), "");

  for (const file of committed) {
    const m = parse(file, readFileSync(path.join(folder, "committed", file), "utf8"));
    out.push(
      `-- ${file}`,
      `select not exists (select from graphile_migrate.migrations where hash = '${m.hash}') as rolesync_run \\gset`,
      "\\if :rolesync_run",
      `\\echo rolesync: ${file}`,
    );
    const old = path.join(compat, file);
    if (existsSync(old)) {
      const c = parse(file, readFileSync(old, "utf8"));
      if (c.hash !== m.hash || c.transaction !== m.transaction) throw new Error(`${old} does not stand for ${file}`);
      out.push("\\if :rolesync_pg12", ...step(m, m.body), "\\else", `-- PostgreSQL 10 and 11: migrations/compat/pg10-11/${file}`, ...step(c, c.body), "\\endif");
    } else {
      out.push(...step(m, m.body));
    }
    out.push("\\endif", "");
  }

  for (const file of gmrc.afterAllMigrations ?? []) out.push(...hook(file), "");
  out.push("select pg_advisory_unlock(4727445306447283) as rolesync_unlocked \\gset", "\\echo rolesync: done", "");
  return out.join("\n");
}
