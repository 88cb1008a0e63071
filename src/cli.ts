/*
 * The `rolesync` command line for operators. Thin: every command is one call
 * into the database or into the migration runner.
 *
 * Exit codes: 0 ok; 1 `check` found a problem; 2 usage error (bad arguments,
 * no database URL); 3 PostgreSQL refused the operation (its SQLSTATE is
 * shown); 4 the database could not be reached.
 */
import { Command, CommanderError, Option } from "commander";
import { runMigrations, MigrationError, type MigrateEvent } from "./migrate.ts";

export const EXIT = { ok: 0, problem: 1, usage: 2, refused: 3, unreachable: 4 } as const;

class UsageError extends Error {}

interface Globals {
  databaseUrl?: string;
  json?: boolean;
}

function databaseUrl(opts: Globals): string {
  const url = opts.databaseUrl ?? process.env.DATABASE_URL;
  if (!url) {
    throw new UsageError(
      "no database given: set DATABASE_URL or pass --database-url postgres://user@host:5432/dbname",
    );
  }
  return url;
}

function redacted(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(the given database URL)";
  }
}

function describeEvent(e: MigrateEvent): string | null {
  switch (e.type) {
    case "start":
      return `application role: ${e.appRole}`;
    case "migration":
      return `→ ${e.name}`;
    case "retry":
      return `  retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s: ${e.reason}`;
    case "progress":
      return `  … ${e.step}: ${e.detail || "running"} (${e.seconds} s)`;
    case "done":
      return e.executed.length
        ? `${e.executed.length} migration(s) applied in ${e.seconds.toFixed(1)} s`
        : `already up to date (${e.seconds.toFixed(1)} s)`;
  }
}

export function buildProgram(): Command {
  const program = new Command("rolesync")
    .description("Race-free group-membership sync for PostgreSQL (Aleph's role_membership).")
    .addOption(new Option("--database-url <url>", "the database (default: $DATABASE_URL)"))
    .option("--json", "machine-readable output on stdout")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();

  program
    .command("migrate")
    .description(
      "apply the migrations: key role_membership online (dedupe, concurrent index builds, short locks)",
    )
    .option("--app-role <role>", "role granted EXECUTE (default: $ROLESYNC_APP_ROLE, else the connecting user)")
    .option("--lock-retries <n>", "retries when a lock is not granted within lock_timeout", "30")
    .action(async (opts: { appRole?: string; lockRetries: string }, cmd: Command) => {
      const globals = cmd.optsWithGlobals<Globals>();
      const url = databaseUrl(globals);
      const lockRetries = Number(opts.lockRetries);
      if (!Number.isInteger(lockRetries) || lockRetries < 0) {
        throw new UsageError(`--lock-retries must be a whole number, not ${opts.lockRetries}`);
      }
      const say = (line: string) => (globals.json ? process.stderr : process.stdout).write(line + "\n");
      say(`rolesync: migrating ${redacted(url)}`);
      const result = await runMigrations({
        databaseUrl: url,
        appRole: opts.appRole ?? process.env.ROLESYNC_APP_ROLE,
        lockRetries,
        onEvent: (e) => {
          const line = describeEvent(e);
          if (line) say(line);
        },
      });
      if (globals.json) console.log(JSON.stringify({ executed: result.executed }));
    });

  return program;
}

/** Runs the CLI; returns the exit code instead of exiting, for tests. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return process.exitCode === undefined ? EXIT.ok : Number(process.exitCode);
  } catch (e) {
    return reportError(e);
  }
}

function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // --help and --version end here too, with exit code 0.
    return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (e instanceof UsageError) {
    console.error(`rolesync: ${e.message}`);
    return EXIT.usage;
  }
  const err = e as { code?: string; message?: string; hint?: string };
  if (err.code && /^[0-9A-Z]{5}$/.test(err.code) && !/^08/.test(err.code)) {
    console.error(`rolesync: ERROR ${err.code}: ${err.message}`);
    console.error(`hint: ${err.hint ?? hintFor(err.code)}`);
    return EXIT.refused;
  }
  if (err.code && /^(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|08\w{3}|3D000|28P01|28000)$/.test(err.code)) {
    console.error(`rolesync: cannot reach the database (${err.code}): ${err.message}`);
    console.error("hint: check the URL, that the server is running, and the credentials");
    return EXIT.unreachable;
  }
  if (e instanceof MigrationError) {
    console.error(`rolesync: ${e.message}`);
    return EXIT.refused;
  }
  console.error(`rolesync: ${(e as Error).stack ?? e}`);
  return EXIT.refused;
}

/** One line of advice per SQLSTATE an operator is likely to meet. */
export function hintFor(code: string): string {
  const hints: Record<string, string> = {
    "55P03": "a long transaction holds a lock on role_membership: find it in pg_stat_activity and retry",
    "42501": "the connecting role lacks a privilege: connect as the owner of the tables",
    "40001": "a concurrent change won: retry the whole transaction",
    "40P01": "a deadlock was broken: retry the whole transaction",
    RS010: "role_membership has another primary key: drop it first, rolesync keys the table on (member_id, group_id)",
    RS011: "an index build was interrupted: run `rolesync migrate` again, it rebuilds the index",
  };
  return hints[code] ?? "see the SQLSTATE table in the README";
}
