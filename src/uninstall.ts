/*
 * `rolesync uninstall`: the way back, in the database. The plan (what to
 * run, in which phase, and what stays) is SQL, a temporary function in
 * migrations/uninstall/plan.sql; this module runs it the way the runner runs
 * migrations, and src/psql.ts prints the same plan as a psql script:
 * - under rolesync's advisory lock, so never beside `rolesync migrate`;
 * - the index builds and drops alone, outside a transaction (writers go on);
 * - everything else in one transaction with lock_timeout 1s, retried with
 *   backoff when a lock is not granted in time (55P03), as migrate does: an
 *   attempt that fails changes nothing;
 * - a dry run plans and prints, and changes nothing.
 * Running it again does only what is left: after Aleph's 4.1 upgrade, that
 * is dropping the key rolesync kept under its own name.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { ADVISORY_LOCK, loadMigrations, lockRetryDelayMs, MigrationError, packageRoot, SUPPORTED_MAJORS_SQL } from "./migrate.ts";
import type { Queryable } from "./client.ts";
import { rolesyncPublicNames } from "./objects.ts";
import { watchProgress, withApplicationName } from "./progress.ts";
import { withClient, type ClientOptions } from "./pg.ts";

const APPLICATION_NAME = "rolesync-uninstall";

export type UninstallPhase = "prepare" | "transaction" | "concurrent" | "keep";

/** One row of the plan: a statement and why, or (phase keep) what stays and why. */
export interface UninstallStep {
  phase: UninstallPhase;
  statement: string | null;
  why: string;
}

export type UninstallEvent =
  | { type: "step"; step: UninstallStep }
  | { type: "retry"; attempt: number; delayMs: number; reason: string }
  | { type: "progress"; step: string; seconds: number; detail: string }
  | { type: "done"; seconds: number };

export interface UninstallOptions {
  databaseUrl: string;
  /** Plan and report; change nothing. */
  dryRun?: boolean;
  /** Drop the archive of removed rows too (default: keep it). */
  dropArchive?: boolean;
  /** How many times to retry the transaction after a lock timeout (default 30). */
  lockRetries?: number;
  onEvent?: (event: UninstallEvent) => void;
  progressIntervalMs?: number;
  clientOptions?: ClientOptions;
}

export interface UninstallResult {
  dryRun: boolean;
  /** The statements run (or, in a dry run, that would run), in order. */
  steps: UninstallStep[];
  /** What stays, and why. */
  kept: UninstallStep[];
  seconds: number;
}

/** The plan function's definition: migrations/uninstall/plan.sql. */
export function uninstallPlanSql(): string {
  return readFileSync(path.join(packageRoot, "migrations", "uninstall", "plan.sql"), "utf8");
}

/** The condition file that says whose Alembic chain the database follows (rolesync.alembic_line(), 000017). */
export const ALEMBIC_LINE_CONDITION = path.join(packageRoot, "migrations", "conditions", "alembic-line.sql");
/** The session setting it sets. */
export const ALEMBIC_LINE_SETTING = "rolesync.alembic_line";

/** Runs the condition file and returns the line: none, aleph-before-4.1, aleph-4.1, openaleph or unknown. */
export async function alembicLine(c: Queryable): Promise<string> {
  await c.query(readFileSync(ALEMBIC_LINE_CONDITION, "utf8"));
  const { rows } = await c.query<{ line: string }>("select pg_catalog.current_setting($1) as line", [ALEMBIC_LINE_SETTING]);
  return rows[0].line;
}

/** The plan's arguments besides the two booleans: this version's ledger and its objects in public. */
export function planArguments(): { filenames: string[]; hashes: string[]; publicNames: string[] } {
  const migrations = loadMigrations();
  return {
    filenames: migrations.map((m) => m.filename),
    hashes: migrations.map((m) => m.hash),
    publicNames: rolesyncPublicNames(),
  };
}

const PHASE_ORDER: Record<UninstallPhase, number> = { prepare: 0, transaction: 1, concurrent: 2, keep: 3 };

class Busy extends Error {}

export async function runUninstall(opts: UninstallOptions): Promise<UninstallResult> {
  const emit = opts.onEvent ?? (() => {});
  const url = withApplicationName(opts.databaseUrl, APPLICATION_NAME);
  const retries = opts.lockRetries ?? 30;
  const started = Date.now();
  const args = planArguments();

  for (let attempt = 1; ; attempt++) {
    const stopWatching = opts.dryRun
      ? async () => {}
      : watchProgress(opts.databaseUrl, APPLICATION_NAME, opts.progressIntervalMs ?? 1000, (p) => emit({ type: "progress", ...p }));
    try {
      const result = await withClient(url, (c) => uninstallOnce(c), opts.clientOptions);
      await stopWatching();
      const seconds = (Date.now() - started) / 1000;
      emit({ type: "done", seconds });
      return { ...result, seconds };
    } catch (e) {
      await stopWatching();
      const err = e as { code?: string; message: string; hint?: string };
      const lockTimeout = err.code === "55P03";
      const busy = e instanceof Busy;
      if ((lockTimeout || busy) && attempt <= retries) {
        const delayMs = lockRetryDelayMs(attempt);
        emit({
          type: "retry",
          attempt,
          delayMs: Math.round(delayMs),
          reason: lockTimeout
            ? "a lock was not granted within lock_timeout (a long transaction holds role_membership); nothing was changed"
            : "a rolesync migration is running",
        });
        await sleep(delayMs);
        continue;
      }
      if (lockTimeout || busy) {
        throw new MigrationError(
          busy ? "a rolesync migration is running on this database" : err.message,
          busy ? "55P03" : err.code,
          busy
            ? "Wait for it to finish, then run `rolesync uninstall` again."
            : "A long-running transaction keeps role_membership locked: find it in pg_stat_activity, end it, and run `rolesync uninstall` again. Nothing was changed by the attempt that timed out.",
        );
      }
      throw e;
    }
  }

  async function uninstallOnce(c: pg.Client): Promise<Omit<UninstallResult, "seconds">> {
    await c.query(SUPPORTED_MAJORS_SQL);
    const { rows: l } = await c.query<{ locked: boolean }>("select pg_try_advisory_lock($1) as locked", [ADVISORY_LOCK]);
    if (!l[0].locked) throw new Busy("a rolesync migration holds the lock");
    try {
      await c.query(uninstallPlanSql());
      const plan = async (): Promise<UninstallStep[]> => {
        const line = await alembicLine(c);
        const { rows } = await c.query<UninstallStep & { step: number }>(
          "select step, phase, statement, why from pg_temp.rolesync_uninstall_plan($1, $2, $3, $4, $5)",
          [Boolean(opts.dropArchive), line, args.filenames, args.hashes, args.publicNames],
        );
        return rows
          .sort((a, b) => PHASE_ORDER[a.phase] - PHASE_ORDER[b.phase] || a.step - b.step)
          .map(({ phase, statement, why }) => ({ phase, statement, why }));
      };
      const first = await plan();
      const kept = first.filter((s) => s.phase === "keep");
      if (opts.dryRun) return { dryRun: true, steps: first.filter((s) => s.phase !== "keep"), kept };

      const done: UninstallStep[] = [];
      for (const s of first.filter((x) => x.phase === "prepare")) {
        emit({ type: "step", step: s });
        await c.query(s.statement!);
        done.push(s);
      }
      // Planned again: the prepared index is there now.
      const steps = await plan();
      const tx = steps.filter((s) => s.phase === "transaction");
      if (tx.length) {
        await c.query("begin");
        try {
          await c.query("set local lock_timeout = '1s'");
          for (const s of tx) await c.query(s.statement!);
          await c.query("commit");
        } catch (e) {
          await c.query("rollback").catch(() => {});
          throw e;
        }
        for (const s of tx) emit({ type: "step", step: s });
        done.push(...tx);
      }
      for (const s of steps.filter((x) => x.phase === "concurrent")) {
        emit({ type: "step", step: s });
        await c.query(s.statement!);
        done.push(s);
      }
      return { dryRun: false, steps: done, kept };
    } finally {
      await c.query("select pg_advisory_unlock($1)", [ADVISORY_LOCK]).catch(() => {});
    }
  }
}
