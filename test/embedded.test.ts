/*
 * The embedded server's own failure paths, run as a newcomer meets them: a
 * subprocess started the way `npm test` starts its server, with a temp folder
 * of its own so that "nothing left behind" can be checked exactly. These run
 * as whoever runs the suite: CI runs it as root and as a normal user.
 */
import { afterEach, expect, test } from "vitest";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { binaryRoot, serverAccount, unreachable, writeSecret } from "../scripts/embedded.ts";
import { runNode } from "./helpers.ts";

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
