/*
 * pgTAP provisioning, for any server the harness runs against:
 * - CREATE EXTENSION pgtap when the server has it;
 * - otherwise load the distribution's pgtap.sql (pgTAP is pure SQL), from the
 *   installed Debian package or, failing that, from `apt-get download` into a
 *   cache. pg_prove comes from the same place.
 * pgTAP always lives in schema `tap`; test files put it on their search_path.
 */
import { execFileSync } from "node:child_process";
import { $ } from "zx";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { packageRoot } from "../../src/migrate.ts";

const cacheDir = path.join(packageRoot, "node_modules", ".cache", "rolesync", "pgtap");
const PERL_LIB = "usr/share/perl5";

function which(cmd: string): string | null {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

function findPgTapSql(root: string): string | null {
  const base = path.join(root, "usr/share/postgresql");
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const f = path.join(base, v, "extension", "pgtap.sql");
    if (existsSync(f)) return f;
  }
  return null;
}

/** Fetches the Debian packages into the cache (no root, no install). */
function download(log: (s: string) => void): void {
  if (existsSync(path.join(cacheDir, "usr/bin/pg_prove")) && findPgTapSql(cacheDir)) return;
  if (!which("apt-get") || !which("dpkg-deb")) {
    throw new Error(
      "pgTAP is not installed and apt-get is not available to fetch it.\n" +
        "hint: install pgTAP and pg_prove (Debian: apt-get install postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl)",
    );
  }
  const candidates = execFileSync("apt-cache", ["pkgnames", "postgresql-"], { encoding: "utf8" })
    .split("\n")
    .filter((p) => /^postgresql-\d+-pgtap$/.test(p))
    .sort((a, b) => Number(b.split("-")[1]) - Number(a.split("-")[1]));
  if (candidates.length === 0) {
    throw new Error(
      "no postgresql-N-pgtap package is known to apt.\nhint: run `apt-get update`, or install pgTAP by hand",
    );
  }
  mkdirSync(cacheDir, { recursive: true });
  log(`fetching ${candidates[0]} and pg_prove with apt-get download into ${path.relative(packageRoot, cacheDir)}`);
  execFileSync("apt-get", ["download", candidates[0], "libtap-parser-sourcehandler-pgtap-perl"], {
    cwd: cacheDir,
    stdio: ["ignore", "ignore", "pipe"],
  });
  for (const deb of readdirSync(cacheDir).filter((f) => f.endsWith(".deb"))) {
    execFileSync("dpkg-deb", ["-x", deb, "."], { cwd: cacheDir });
  }
}

export type PgTapSource = "extension" | "installed-sql" | "downloaded-sql";

/** Installs pgTAP into schema `tap` of the database the client is connected to. */
export async function installPgTap(
  client: pg.Client,
  log: (s: string) => void = () => {},
  opts: { forceDownload?: boolean } = {},
): Promise<PgTapSource> {
  await client.query("create schema if not exists tap");
  if (!opts.forceDownload) {
    const { rowCount } = await client.query(
      "select from pg_catalog.pg_available_extensions where name = 'pgtap'",
    );
    if (rowCount) {
      await client.query("create extension if not exists pgtap with schema tap");
      return "extension";
    }
  }
  let file = opts.forceDownload ? null : findPgTapSql("/");
  let source: PgTapSource = "installed-sql";
  if (!file) {
    download(log);
    file = findPgTapSql(cacheDir);
    source = "downloaded-sql";
    if (!file) throw new Error(`the pgTAP package in ${cacheDir} has no pgtap.sql`);
  }
  await client.query("set search_path = tap");
  try {
    await client.query(readFileSync(file, "utf8"));
  } finally {
    await client.query("reset search_path");
  }
  return source;
}

/** The pg_prove command line, and the environment it needs. */
export function pgProve(
  log: (s: string) => void = () => {},
  opts: { forceDownload?: boolean } = {},
): { cmd: string[]; env: NodeJS.ProcessEnv } {
  const installed = opts.forceDownload ? null : which("pg_prove");
  if (installed) return { cmd: [installed], env: {} };
  download(log);
  return {
    cmd: ["perl", path.join(cacheDir, "usr/bin/pg_prove")],
    env: { PERL5LIB: [path.join(cacheDir, PERL_LIB), process.env.PERL5LIB].filter(Boolean).join(":") },
  };
}

export function pgEnv(url: string): NodeJS.ProcessEnv {
  const u = new URL(url);
  return {
    PGHOST: u.hostname,
    PGPORT: u.port || "5432",
    PGUSER: decodeURIComponent(u.username) || "postgres",
    PGPASSWORD: decodeURIComponent(u.password),
    PGDATABASE: decodeURIComponent(u.pathname.slice(1)),
  };
}

export interface PgProveRun {
  files: number;
  tests: number;
  output: string;
}

/**
 * Runs pg_prove over a directory and fails unless it ran at least one file
 * with at least one test: without `--ext .sql` pg_prove finds no files, says
 * NOTESTS and exits 0, which must never pass for green.
 */
export async function runPgProve(
  url: string,
  dir: string,
  opts: { ext?: string | null; echo?: boolean; forceDownload?: boolean; log?: (s: string) => void } = {},
): Promise<PgProveRun> {
  const { cmd, env } = pgProve(opts.log, { forceDownload: opts.forceDownload });
  const ext = opts.ext === undefined ? [".sql"] : opts.ext === null ? [] : [opts.ext];
  const p = $({ cwd: packageRoot, env: { ...process.env, ...env, ...pgEnv(url) }, nothrow: true })`${cmd} ${
    ext.length ? ["--ext", ...ext] : []
  } -r ${dir}`;
  let output = "";
  for await (const chunk of p.stdout) {
    output += chunk;
    if (opts.echo) process.stdout.write(chunk);
  }
  const result = await p;
  if (opts.echo) process.stderr.write(result.stderr);
  const summary = /Files=(\d+), Tests=(\d+)/.exec(output);
  if (result.exitCode !== 0) {
    throw Object.assign(new Error(`pg_prove failed (exit ${result.exitCode}) on ${dir}`), {
      output: output + result.stderr,
    });
  }
  if (!summary || Number(summary[1]) === 0 || Number(summary[2]) === 0 || /NOTESTS/.test(output)) {
    throw new Error(`pg_prove ran no pgTAP tests in ${dir}: check the directory and the --ext .sql flag`);
  }
  return { files: Number(summary[1]), tests: Number(summary[2]), output };
}
