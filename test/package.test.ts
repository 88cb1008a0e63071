/*
 * The package as a user gets it: `npm pack`, then `npm install` of the
 * tarball into an empty project (dependencies from the npm registry), the
 * `rolesync` command, the ESM entry, the types, and a migration of a fresh
 * database, in an app that brings its own (oldest supported) pg. Also `npm install <folder>` of a checkout, with and without
 * `npm ci` run in it.
 *
 * Everything happens in a temporary copy of this checkout (its files,
 * without node_modules, dist and .git), so that the builds `npm pack` and
 * `prepare` run never touch the dist/ other test files are using.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { createTestDatabase, type TestDatabase } from "./helpers.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** npm settings that say how to reach the registry: kept, in case they are only in the environment. */
const REGISTRY_SETTINGS = /^npm_config_(registry|cache|userconfig|globalconfig|cafile|ca|strict_ssl|proxy|https_proxy|noproxy|offline|prefer_offline)$/i;

/**
 * The environment of a user's shell: none of the npm_* variables (the
 * project, the lifecycle, local_prefix ...), PATH entries or test settings
 * that `npm test` and vitest put in ours.
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && !REGISTRY_SETTINGS.test(k)) continue;
    if (/^(ROLESYNC_|VITEST)/i.test(k) || ["INIT_CWD", "NODE_OPTIONS", "NODE_ENV", "DATABASE_URL"].includes(k)) continue;
    env[k] = v;
  }
  env.PATH = (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((p) => !/node_modules[\\/]\.bin$|node-gyp-bin$/.test(p))
    .join(path.delimiter);
  return { ...env, ...extra };
}

function run(command: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: userEnv(extraEnv) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Fails with the command's output, so a failure in CI says why. */
function expectOk(r: Run, what: string): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
}

const npm = (args: string[], cwd: string, env: Record<string, string> = {}) =>
  run("npm", ["--no-audit", "--no-fund", "--loglevel=error", ...args], cwd, env);

async function emptyProject(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  expectOk(await npm(["init", "-y"], dir), "npm init -y");
  return dir;
}

/** The pg versions rolesync supports as a peer: the oldest is what the install test runs on. */
const PG_PEER_RANGE = "^8.11.0";

let work: string;
let checkout: string;

/** The checkout after `npm ci`: its dev dependencies (TypeScript among them) are this checkout's. */
function runNpmCiInCheckout(): void {
  const modules = path.join(checkout, "node_modules");
  if (!existsSync(modules)) symlinkSync(path.join(packageRoot, "node_modules"), modules, "dir");
}

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), "rolesync-package-"));
  checkout = path.join(work, "checkout");
  // A fresh clone: the working tree, without node_modules, the build, git's folder and ignored scratch folders.
  cpSync(packageRoot, checkout, {
    recursive: true,
    filter: (src) => {
      const rel = path.relative(packageRoot, src);
      return !["node_modules", "dist", ".git", ".cache", "tmp"].includes(rel.split(path.sep)[0]) && !rel.endsWith(".log");
    },
  });
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test("a fresh clone (no `npm ci` run in it): `npm install <folder>` stops at once and says what to do", async () => {
  const canBuild = (() => {
    try {
      createRequire(path.join(checkout, "package.json")).resolve("typescript/package.json");
      return true;
    } catch {
      return false;
    }
  })();
  expect(canBuild, `TypeScript must not be reachable from ${checkout} (is the temporary folder inside a project?)`).toBe(false);
  const app = await emptyProject(path.join(work, "app-fresh-clone"));
  const r = await npm(["install", checkout], app);
  expect(r.code).not.toBe(0);
  // npm links a folder and installs none of its dependencies, so nothing could work here.
  expect(r.stderr).toMatch(/TypeScript is not installed in .*run npm ci in that folder first/s);
  // npm leaves its link behind but does not record the dependency.
  expect(JSON.parse(readFileSync(path.join(app, "package.json"), "utf8")).dependencies?.rolesync).toBeUndefined();
  expect(existsSync(path.join(checkout, "dist"))).toBe(false);
});

describe("the packed tarball, installed into an empty project", () => {
  let tarball: string;
  let app: string;
  let db: TestDatabase;

  beforeAll(async () => {
    runNpmCiInCheckout();
    db = await createTestDatabase({ empty: true });
  });
  afterAll(async () => {
    await db?.drop();
  });

  test("`npm pack` builds dist/ and ships what a user needs, and no tests", async () => {
    const dest = path.join(work, "pack");
    mkdirSync(dest);
    expectOk(await npm(["pack", "--pack-destination", dest], checkout), "npm pack");
    const [file] = readdirSync(dest).filter((f) => f.endsWith(".tgz"));
    expect(file).toMatch(/^rolesync-\d+\.\d+\.\d+.*\.tgz$/);
    tarball = path.join(dest, file);

    const list = await run("tar", ["-tzf", tarball], work);
    expectOk(list, "tar -tzf");
    const files = list.stdout.split("\n").filter(Boolean).map((f) => f.replace(/^package\//, ""));
    expect(new Set(files.map((f) => f.split("/")[0]))).toEqual(
      new Set(["package.json", "README.md", "LICENSE", "CHANGELOG.md", ".gmrc", "dist", "migrations"]),
    );
    for (const f of [
      "dist/index.js",
      "dist/index.d.ts",
      "dist/client.js",
      "dist/bin.js",
      "dist/rolesync.sql", // the psql-only path, for operators without Node.js
      "dist/rolesync-uninstall.sql", // and its way back
      "migrations/uninstall/plan.sql", // which `rolesync uninstall` runs
      "migrations/committed/000001-schema.sql",
      "migrations/compat/pg10-11/000001-schema.sql",
      "migrations/hooks/aleph-tables.sql",
    ]) {
      expect(files).toContain(f);
    }
    expect(files).not.toContain("migrations/current.sql"); // graphile-migrate's scratch file, for development only
    expect(files.filter((f) => /\.test\.|^test\/|^src\/|^scripts\//.test(f))).toEqual([]);
  });

  test("the packed package.json: version 0.2.0 everywhere, pg a peer with a range, no install-time script; the checkout's file untouched", async () => {
    const shipped = JSON.parse((await run("tar", ["-xzOf", tarball, "package/package.json"], work)).stdout);
    const own = JSON.parse(readFileSync(path.join(packageRoot, "package.json"), "utf8"));
    expect(shipped.version).toBe(own.version);
    expect(shipped.peerDependencies).toEqual({ pg: PG_PEER_RANGE });
    expect(shipped.dependencies.pg).toBeUndefined();
    // A tarball ships dist/ built: nothing for npm to run, or to warn about, on install.
    expect(Object.keys(shipped.scripts).filter((s) => /^(pre|post)?install$|^prepare$/.test(s))).toEqual([]);
    // prepack stripped `prepare` from the checkout's package.json and postpack put it back, byte for byte.
    expect(readFileSync(path.join(checkout, "package.json"), "utf8")).toBe(readFileSync(path.join(packageRoot, "package.json"), "utf8"));
  });

  test("`npm install <tarball>` into an app with its own pg (the range's oldest): one pg, no warning; `npx rolesync --help` exits 0", async () => {
    app = await emptyProject(path.join(work, "app-tarball"));
    const oldest = PG_PEER_RANGE.replace(/^\^/, "");
    expectOk(await npm(["install", `pg@${oldest}`], app), `npm install pg@${oldest}`);
    const install = await npm(["install", "--loglevel=warn", tarball], app);
    expectOk(install, "npm install <tarball>");
    expect(install.stderr).not.toMatch(/warn/i);
    expect(install.stdout).not.toMatch(/prepare|node -e/);
    // The app's copy is the one rolesync and graphile-migrate load: none nested under node_modules/rolesync.
    expect(existsSync(path.join(app, "node_modules", "rolesync", "node_modules", "pg"))).toBe(false);
    expect(JSON.parse(readFileSync(path.join(app, "node_modules", "pg", "package.json"), "utf8")).version).toBe(oldest);
    const help = await run("npx", ["--no", "--", "rolesync", "--help"], app);
    expectOk(help, "npx rolesync --help");
    expect(help.stdout).toContain("Usage: rolesync");
  });

  test("the entry is ESM (and, where Node.js has require(esm), require()s too), and its types check", async () => {
    writeFileSync(
      path.join(app, "check.mjs"),
      'import { syncRoleMemberships, withTransaction } from "rolesync";\n' +
        "console.log(typeof syncRoleMemberships, typeof withTransaction);\n",
    );
    const esm = await run(process.execPath, ["check.mjs"], app);
    expectOk(esm, "node check.mjs");
    expect(esm.stdout.trim()).toBe("function function");

    if ((process.features as { require_module?: boolean }).require_module) {
      writeFileSync(path.join(app, "check.cjs"), 'console.log(typeof require("rolesync").withTransaction);\n');
      const cjs = await run(process.execPath, ["check.cjs"], app);
      expectOk(cjs, "node check.cjs");
      expect(cjs.stdout.trim()).toBe("function");
    }

    writeFileSync(
      path.join(app, "check.mts"),
      [
        'import { syncRoleMemberships, withTransaction, type ClientPool, type SyncResult, type TransactionOptions } from "rolesync";',
        'const options: TransactionOptions = { isolationLevel: "repeatable read", attempts: 3 };',
        "export function login(pool: ClientPool, member: number, groups: number[]): Promise<SyncResult> {",
        "  return withTransaction(pool, (client) => syncRoleMemberships(client, member, groups), options);",
        "}",
        "// @ts-expect-error not an isolation level",
        'export const bad: TransactionOptions = { isolationLevel: "read uncommitted" };',
        "",
      ].join("\n"),
    );
    writeFileSync(
      path.join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { strict: true, module: "nodenext", moduleResolution: "nodenext", noEmit: true, types: [], skipLibCheck: false },
        files: ["check.mts"],
      }),
    );
    const tsc = path.join(packageRoot, "node_modules", "typescript", "bin", "tsc");
    expectOk(await run(process.execPath, [tsc, "-p", "."], app), "tsc on the installed types");
  });

  test("`rolesync migrate --create-aleph-schema`, then `rolesync check`, on a fresh database: exit 0 each", async () => {
    const env = { DATABASE_URL: db.url };
    const migrate = await run("npx", ["--no", "--", "rolesync", "migrate", "--create-aleph-schema"], app, env);
    expectOk(migrate, "rolesync migrate --create-aleph-schema");
    const check = await run("npx", ["--no", "--", "rolesync", "check"], app, env);
    expectOk(check, "rolesync check");
  });
});

test("a clone that ran `npm ci`: `npm install <folder>` links it, `prepare` builds it, `npx rolesync --help` exits 0", async () => {
  runNpmCiInCheckout();
  rmSync(path.join(checkout, "dist"), { recursive: true, force: true }); // start without a build
  const app = await emptyProject(path.join(work, "app-checkout"));
  expectOk(await npm(["install", checkout], app), "npm install <checkout>");
  expect(existsSync(path.join(checkout, "dist", "bin.js"))).toBe(true);
  const help = await run("npx", ["--no", "--", "rolesync", "--help"], app);
  expectOk(help, "npx rolesync --help");
  expect(help.stdout).toContain("Usage: rolesync");
});
