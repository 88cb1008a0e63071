/*
 * `npm test`: every test, against a real PostgreSQL.
 *   1. a server: DATABASE_URL's, or a throwaway embedded PostgreSQL 17
 *      (scripts/server/embedded.ts: any user, nothing left in the temp folder), or
 *      of the major `--pg N` or ROLESYNC_PG_MAJOR=N names (10 to 18; fetched
 *      once into node_modules/.cache/rolesync/pg);
 *   2. a template database, migrated and with pgTAP installed;
 *   3. pg_prove over each test/sql/*.sql file, each in its own clone of the template;
 *   4. vitest over test/*.test.ts, each file cloning its own database (after
 *      building dist/, which the CLI and client tests exercise);
 *   5. pytest over python/tests (the Python client and the Aleph plugin, on a
 *      stand-in of each Aleph line), in a virtual environment of its own with
 *      the wheel built from python/ (scripts/test/pytest.ts). Without Python 3 and
 *      its venv module it says so in one line, with the fix, and reports them
 *      as not run.
 * It fails when a step fails, and also when a step ran no tests (pg_prove
 * without --ext .sql says NOTESTS and exits 0) or skipped any. Its last line
 * counts both suites' tests: `tests: N passed, M failed`.
 * Arguments after `--` go to vitest, e.g. `npm test -- test/stress.test.ts`,
 * except `--pg N` (or `--pg=N`), which is taken out and sets ROLESYNC_PG_MAJOR
 * for this run and everything it starts: `npm test -- --pg 15`.
 */
import { $ } from "zx";
import { chmodSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { embeddedMajor, OneLineError, removeOnExit, requestedMajor, takePgOption } from "../server/embedded.ts";
import { tmpdir } from "node:os";
import path from "node:path";
import { checkDatabaseUrl, dropDatabase, startServerOrExit, type Server } from "../server/db.ts";
import { cloneTemplate, prepareTemplate } from "./harness.ts";
import { runPgProve } from "./pgtap.ts";
import { preparePython, runPytest, type PytestOutcome } from "./pytest.ts";
import { packageRoot } from "../../src/migrate.ts";

$.verbose = false;
const log = (s: string) => console.log(`[rolesync test] ${s}`);

/**
 * Ctrl-C (or a SIGTERM, SIGHUP) reaches every process of the run at once:
 * vitest, pytest and the tests' subprocesses stop, and a step's failure that
 * says only that is not a failure of the code. So the run says it was
 * interrupted, reports no FAIL, and exits 128 + the signal's number, while
 * removeOnExit's handler (installed just below, after this one) stops the
 * servers and removes every folder of ours.
 */
let interrupted: NodeJS.Signals | undefined;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = signal;
    console.error(`[rolesync test] interrupted (${signal}): stopping the servers and removing the run's folders`);
  });
}
const SIGNAL_EXIT: Record<NodeJS.Signals, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as Record<NodeJS.Signals, number>;

/**
 * The temp folder of everything the tests start: vitest and its workers, the
 * test files' own folders and their subprocesses' (the bench's, npm's ...)
 * get it as TMPDIR. A worker stopped by Ctrl-C runs no afterAll, so this one
 * folder, removed at exit and on a signal, is what keeps /tmp clean. Mode
 * 711: as root, the `postgres` account an embedded server runs as must reach
 * its folder inside.
 */
const runTmp = mkdtempSync(path.join(tmpdir(), "rolesync-test-"));
chmodSync(runTmp, 0o711);
removeOnExit(runTmp);
/** Every test that ran, pgTAP's and vitest's, for the closing line. */
const tally = { passed: 0, failed: 0 };

let vitestArgs: string[];
try {
  vitestArgs = takePgOption(process.argv.slice(2), "npm test -- --pg 15");
  // A major that cannot be had stops the run here, before the build and before any download.
  checkDatabaseUrl();
  if (process.env.DATABASE_URL) requestedMajor();
  else embeddedMajor();
} catch (e) {
  if (!(e instanceof OneLineError)) throw e;
  console.error(`[rolesync test] ${e.message}`);
  process.exit(1);
}

/** Each pgTAP file gets its own clone of the template; two run at a time. */
async function runPgTapSuite(server: Server, template: string): Promise<{ files: number; tests: number }> {
  const dir = path.join(packageRoot, "test", "sql");
  const files = readdirSync(dir).filter((f) => f.endsWith(".sql")).sort();
  if (files.length === 0) throw new Error("no pgTAP files in test/sql");
  const totals = { files: 0, tests: 0 };
  const failed: string[] = [];
  const queue = [...files];
  const worker = async () => {
    for (let file = queue.shift(); file; file = queue.shift()) {
      const db = await cloneTemplate(server, template, "rolesync_pgtap");
      try {
        const run = await runPgProve(server.url(db), path.join("test", "sql", file), { log });
        totals.files += run.files;
        totals.tests += run.tests;
        tally.passed += run.tests;
        // pg_prove's own report (the file's line, "Files=1, Tests=N", "Result: PASS"), whole, so two files never interleave.
        process.stdout.write(run.output);
      } catch (e) {
        failed.push(file);
        const output = (e as { output?: string }).output ?? "";
        // pg_prove's "Failed 2/40 subtests"; a file that stopped before its plan counts as one failure.
        const m = /Failed (\d+)\/(\d+) subtests/.exec(output);
        tally.failed += m ? Number(m[1]) : 1;
        tally.passed += m ? Number(m[2]) - Number(m[1]) : 0;
        process.stdout.write(`pgTAP ${file}: FAILED\n${output}\n`);
      } finally {
        await dropDatabase(server, db);
      }
    }
  };
  await Promise.all([worker(), worker()]);
  if (failed.length) throw new Error(`pgTAP failed in ${failed.join(", ")}`);
  return totals;
}

interface VitestReport {
  numTotalTestSuites: number;
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: unknown[];
}

async function runVitest(env: NodeJS.ProcessEnv, args: string[]): Promise<{ files: number; tests: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), "rolesync-vitest-"));
  const release = removeOnExit(dir);
  const reportFile = path.join(dir, "report.json");
  try {
    const vitest = path.join(packageRoot, "node_modules", ".bin", "vitest");
    // vitest colours its report whenever CI is set; a log that is not a terminal gets plain text.
    const plain = process.stdout.isTTY || "FORCE_COLOR" in process.env ? {} : { NO_COLOR: "1" };
    const p = $({ cwd: packageRoot, env: { ...process.env, ...plain, ...env }, nothrow: true, stdio: "inherit" })`${vitest} run --reporter=default --reporter=json --outputFile=${reportFile} ${args}`;
    const out = await p;
    let report: VitestReport;
    try {
      report = JSON.parse(readFileSync(reportFile, "utf8")) as VitestReport;
    } catch {
      tally.failed += 1;
      throw new Error(`vitest failed (exit ${out.exitCode}) and wrote no report`);
    }
    tally.passed += report.numPassedTests;
    tally.failed += report.numFailedTests;
    if (out.exitCode !== 0 || report.numFailedTests > 0) {
      throw new Error(`vitest failed (exit ${out.exitCode}, ${report.numFailedTests} failed)`);
    }
    if (report.numTotalTests === 0) throw new Error("vitest ran no tests");
    if (report.numPendingTests + report.numTodoTests > 0) {
      throw new Error(`vitest skipped ${report.numPendingTests + report.numTodoTests} test(s): a skipped test is a defect`);
    }
    return { files: report.testResults.length, tests: report.numTotalTests };
  } finally {
    release();
  }
}

// The CLI tests run the built `rolesync` binary, and the client tests import the package entry.
await $({ cwd: packageRoot, stdio: "inherit" })`npm run -s build`;

const server = await startServerOrExit({ log, name: "[rolesync test]" });
let template: string | undefined;
const failures: string[] = [];
let pythonOutcome: PytestOutcome | undefined;
try {
  template = await prepareTemplate(server, log);
  // Both suites run even when the first fails, so one run reports every failure.
  const pgtap = await runPgTapSuite(server, template).catch((e: Error) => void failures.push(e.message));
  // The Python environment first: vitest's docs test runs the Python snippets with it.
  const pythonWanted = !vitestArgs.some((a) => !a.startsWith("-")) && process.env.ROLESYNC_TEST_PYTHON !== "off";
  const pythonProblemHere = await preparePython(log).catch((e: Error) => {
    failures.push(`the Python environment: ${e.message}`);
    return e.message;
  });
  if (pythonProblemHere && pythonWanted) log(`Python tests not run: ${pythonProblemHere}`);
  const vitest = await runVitest(
    {
      ROLESYNC_TEST_ADMIN_URL: server.adminUrl,
      ROLESYNC_TEST_TEMPLATE: template,
      ROLESYNC_TEST_SERVER: `PostgreSQL ${server.major} (${server.kind})`,
      TMPDIR: runTmp,
    },
    vitestArgs,
  ).catch((e: Error) => void failures.push(e.message));
  // Not with a file filter (`npm test -- test/x.test.ts` means "just these"), nor with
  // ROLESYNC_TEST_PYTHON=off (CI's runs on the majors the Python tests add nothing to).
  let pytest: PytestOutcome | undefined;
  const filtered = vitestArgs.some((a) => !a.startsWith("-"));
  const pythonOff = process.env.ROLESYNC_TEST_PYTHON === "off";
  if (!filtered && !pythonOff && !interrupted) {
    pytest = await runPytest({ ROLESYNC_TEST_ADMIN_URL: server.adminUrl, TMPDIR: runTmp }, log).catch((e: Error & { tally?: { passed: number; failed: number } }) => {
      failures.push(e.message);
      tally.passed += e.tally?.passed ?? 0;
      tally.failed += e.tally?.failed ?? 1;
      return undefined;
    });
    if (pytest?.ran) tally.passed += pytest.passed;
    pythonOutcome = pytest;
  }
  if (pgtap && vitest && (pytest || filtered || pythonOff)) {
    const python = !pytest
      ? `pytest not run (${filtered ? "a file filter was given" : "ROLESYNC_TEST_PYTHON=off"})`
      : pytest.ran
        ? `pytest ${pytest.tests} tests in ${pytest.files} files`
        : `pytest not run (${pytest.why})`;
    log(
      `PASS on PostgreSQL ${server.major} (${server.kind}): ` +
        `pgTAP ${pgtap.tests} tests in ${pgtap.files} files; vitest ${vitest.tests} tests in ${vitest.files} files; ${python}`,
    );
  }
} catch (e) {
  failures.push((e as Error).message);
} finally {
  if (template) await dropDatabase(server, template).catch(() => {});
  await server.stop();
}
if (interrupted) {
  console.log(`tests: interrupted (${interrupted}) after ${tally.passed} passed`);
  process.exit(SIGNAL_EXIT[interrupted]);
}
for (const f of failures) console.error(`[rolesync test] FAIL: ${f}`);
const pythonNotRun = pythonOutcome && !pythonOutcome.ran ? pythonOutcome.why : null;
// The plain closing line a CI reads: every pgTAP and vitest test that ran.
// A failure outside any test (the build, the server) counts as one.
if (failures.length && tally.failed === 0) tally.failed = 1;
console.log(`tests: ${tally.passed} passed, ${tally.failed} failed${pythonNotRun ? `; Python tests not run: ${pythonNotRun}` : ""}`);
process.exit(failures.length ? 1 : 0);
