/*
 * The Python tests of `npm test`: the client and the Aleph plugin (python/),
 * under pytest, against the same PostgreSQL server as the rest.
 *
 * 1. A virtual environment of the harness's own, node_modules/.cache/rolesync/python
 *    (out of git; `npm ci` empties it), with the test dependencies and the
 *    rolesync wheel built from python/ (the artifact, not the source tree).
 *    SQLAlchemy is held below 2.1: neither Aleph line runs 2.1.
 * 2. pytest twice, once per Aleph line's stand-in (ROLESYNC_STANDIN=aleph41,
 *    then openaleph53): the client's tests run in the first, the plugin's in both.
 * It fails when a run fails, collects nothing, or skips anything (a skipped
 * test is a defect here). Where Python 3 or its venv module is missing (Debian
 * and Ubuntu ship venv as python3-venv), it says so in one line with the fix
 * and reports the Python tests as not run; `.ci/run` refuses a run without them.
 */
import { $ } from "zx";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { removeOnExit } from "../server/embedded.ts";
import { packageRoot } from "../../src/migrate.ts";

/** What the tests need beside the package (ranges that include what each Aleph line pins). */
export const TEST_REQUIREMENTS = [
  "SQLAlchemy>=2.0.21,<2.1",
  "Flask>=2.3",
  "Flask-SQLAlchemy>=3.0.5",
  "psycopg2-binary>=2.9",
  "psycopg[binary]>=3.1",
  "prometheus-client>=0.17.1",
  "pytest>=7",
];

/** The stand-ins of the two lines, in the order pytest runs them. */
export const LINES = ["aleph41", "openaleph53"] as const;

export const VENV = path.join(packageRoot, "node_modules", ".cache", "rolesync", "python");

export type PytestOutcome =
  | { ran: true; files: number; tests: number; passed: number; failed: number }
  | { ran: false; why: string };

/** Why Python tests cannot run here, with the fix; null when they can. */
export async function pythonProblem(): Promise<string | null> {
  const probe = await $({ nothrow: true, quiet: true })`python3 -c ${"import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 9) else 3)"}`;
  if (probe.exitCode === 0) return null;
  if (probe.exitCode === 3) return "python3 is older than 3.9; install Python 3.9 or later";
  const which = await $({ nothrow: true, quiet: true })`python3 --version`;
  if (which.exitCode !== 0) return "python3 is not installed; on Debian or Ubuntu: apt-get install python3 python3-venv";
  return "python3's venv module is missing; on Debian or Ubuntu: apt-get install python3-venv";
}

function bin(name: string): string {
  return path.join(VENV, "bin", name);
}

/** The venv, made once and reused while its requirements are the same; the wheel reinstalled each run. */
async function prepareVenv(log: (s: string) => void): Promise<void> {
  const stamp = path.join(VENV, ".rolesync-requirements");
  const wanted = createHash("sha1").update(TEST_REQUIREMENTS.join("\n")).digest("hex");
  const quiet = { quiet: true, env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: "1" } };
  if (!existsSync(bin("python")) || !existsSync(stamp) || readFileSync(stamp, "utf8") !== wanted) {
    log(`python: a virtual environment in ${path.relative(packageRoot, VENV)} with ${TEST_REQUIREMENTS.join(", ")}`);
    await $(quiet)`python3 -m venv --clear ${VENV}`;
    await $(quiet)`${bin("pip")} install -q ${TEST_REQUIREMENTS}`;
    writeFileSync(stamp, wanted);
  }
  // The package as users get it: a wheel built from python/ by its own build backend.
  const dist = mkdtempSync(path.join(tmpdir(), "rolesync-wheel-"));
  const release = removeOnExit(dist);
  try {
    await $(quiet)`${bin("pip")} wheel -q --no-deps -w ${dist} ${path.join(packageRoot, "python")}`;
    const wheel = readdirSync(dist).find((f) => f.endsWith(".whl"));
    if (!wheel) throw new Error("pip wheel built no wheel from python/");
    await $(quiet)`${bin("pip")} install -q --force-reinstall --no-deps ${path.join(dist, wheel)}`;
    log(`python: installed ${wheel}`);
  } finally {
    release();
  }
}

interface Junit {
  tests: number;
  failures: number;
  errors: number;
  skipped: number;
  files: number;
}

function readJunit(file: string): Junit {
  const xml = readFileSync(file, "utf8");
  const suite = /<testsuite\b([^>]*)>/.exec(xml)?.[1] ?? "";
  const attr = (name: string) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite)?.[1] ?? "0");
  const files = new Set([...xml.matchAll(/<testcase\b[^>]*\bclassname="([^"]*)"/g)].map((m) => m[1].split(".").slice(0, -1).join(".") || m[1]));
  return { tests: attr("tests"), failures: attr("failures"), errors: attr("errors"), skipped: attr("skipped"), files: files.size };
}

/** The venv's python, for the bench's whole-callback logins; ready once preparePython() has run (here or in an earlier run). */
export function venvPython(): string | null {
  return existsSync(bin("python")) && existsSync(path.join(VENV, ".rolesync-requirements")) ? bin("python") : null;
}

let prepared: Promise<string | null> | undefined;

/**
 * The venv with the wheel, made once per run (before vitest, whose docs test
 * runs the Python snippets with it); null, or why Python cannot run here.
 */
export function preparePython(log: (s: string) => void): Promise<string | null> {
  prepared ??= (async () => {
    const problem = await pythonProblem();
    if (problem) return problem;
    await prepareVenv(log);
    return null;
  })();
  return prepared;
}

/** Runs the Python tests; `env` carries the server (ROLESYNC_TEST_ADMIN_URL) like vitest's. */
export async function runPytest(env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<PytestOutcome> {
  const problem = await preparePython(log);
  if (problem) return { ran: false, why: problem };
  const out = mkdtempSync(path.join(tmpdir(), "rolesync-pytest-"));
  const release = removeOnExit(out);
  const total = { files: 0, tests: 0, passed: 0, failed: 0 };
  const problems: string[] = [];
  try {
    for (const line of LINES) {
      const report = path.join(out, `${line}.xml`);
      // pytest's own temporary folders inside ours, so that nothing of the run stays in /tmp.
      const args = [
        line === LINES[0] ? "tests" : path.join("tests", "aleph"),
        `--junitxml=${report}`,
        `--basetemp=${path.join(out, `tmp-${line}`)}`,
        "-p",
        "no:cacheprovider",
      ];
      log(`pytest with the ${line} stand-in`);
      const run = await $({
        cwd: path.join(packageRoot, "python"),
        env: { ...process.env, ...env, ROLESYNC_STANDIN: line, ROLESYNC_BIN: path.join(packageRoot, "dist", "bin.js"), PYTHONDONTWRITEBYTECODE: "1" },
        nothrow: true,
        stdio: "inherit",
      })`${bin("python")} -m pytest ${args}`;
      if (!existsSync(report)) {
        problems.push(`pytest (${line}) exited ${run.exitCode} and wrote no report`);
        total.failed += 1;
        continue;
      }
      const j = readJunit(report);
      total.files += j.files;
      total.tests += j.tests;
      total.failed += j.failures + j.errors;
      total.passed += j.tests - j.failures - j.errors - j.skipped;
      if (run.exitCode !== 0 || j.failures + j.errors > 0) problems.push(`pytest (${line}) failed (exit ${run.exitCode}, ${j.failures + j.errors} failed)`);
      if (j.tests === 0) problems.push(`pytest (${line}) ran no tests`);
      if (j.skipped > 0) problems.push(`pytest (${line}) skipped ${j.skipped} test(s): a skipped test is a defect`);
    }
  } finally {
    release();
  }
  if (problems.length) throw Object.assign(new Error(problems.join("; ")), { tally: total });
  return { ran: true, ...total };
}
