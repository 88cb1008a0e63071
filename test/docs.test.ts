/*
 * Every code block of README.md and docs/*.md runs, in order within its file
 * (a guide's steps build on each other), against a database of the file's own:
 * sh blocks in bash, sql blocks through psql, ts blocks with tsx, python blocks
 * with the Python tests' interpreter. A snippet that drifts from the code then
 * fails here. A block that cannot run here carries, on the line before it,
 * `<!-- docs: <reason> -->` with one reason of REASONS; the psql lines of the
 * docker-compose and Helm blocks still run, against the test database.
 *
 * The sandbox of a file: a folder of its own as the working directory, with
 * `rolesync` and `npx rolesync` running this checkout's built CLI, `./python`
 * this checkout's Python package, `node_modules/rolesync` and `pg` for the ts
 * blocks, and DATABASE_URL set to the file's database: an Aleph 4.0 database
 * with duplicate and NULL rows (Alembic 8adf50aadcb0) and a few named roles
 * (user 42 `oidc:1234`, groups 107 `group:research`, 109 `group:ops`,
 * 112 `group:legal`); README.md and docs/aleph.md start from it as an operator
 * does, the others with rolesync migrated into it.
 */
import { afterAll, describe, expect, test } from "vitest";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { packageRoot, runMigrations } from "../src/migrate.ts";
import { pgEnv } from "../scripts/test/pgtap.ts";
import { VENV } from "../scripts/test/pytest.ts";
import { alephDatabase } from "./aleph-fixtures.ts";
import { withPgClient, type TestDatabase } from "./helpers.ts";

/** Why a block does not run here: the only reasons there are. */
export const REASONS = [
  "needs Docker",
  "needs a Kubernetes cluster",
  "needs Aleph's image",
  "needs Citus",
  "output shown for reading",
  "run by .ci/run",
] as const;

export interface Block {
  file: string;
  line: number;
  lang: string;
  code: string;
  skip: string | null;
}

/** The fenced blocks of a markdown file, each with the `<!-- docs: reason -->` line before it, if any. */
export function blocks(file: string, text: string): Block[] {
  const out: Block[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1].length;
    let j = i + 1;
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j])) j++;
    const marker = /^\s*<!-- docs: (.+) -->\s*$/.exec(lines[i - 1] ?? "");
    out.push({
      file,
      line: i + 1,
      lang: open[2],
      code: lines.slice(i + 1, j).map((l) => l.slice(indent)).join("\n"),
      skip: marker ? marker[1] : null,
    });
    i = j;
  }
  return out;
}

const FILES = ["README.md", ...readdirSync(path.join(packageRoot, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];
/** Files whose guide starts from an Aleph database rolesync has not touched; the others get rolesync migrated first. */
const FROM_SCRATCH = new Set(["README.md", "docs/aleph.md"]);

const SEED = `
insert into public.role (id, foreign_id, name, email, type, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at)
values (42, 'oidc:1234', 'Ada', 'ada@example.org', 'user', false, false, false, false, now(), now()),
       (107, 'group:research', 'research', null, 'group', false, false, false, false, now(), now()),
       (109, 'group:ops', 'ops', null, 'group', false, false, false, false, now(), now()),
       (112, 'group:legal', 'legal', null, 'group', false, false, false, false, now(), now())
on conflict do nothing;
select setval('public.role_id_seq', greatest(200, (select max(id) from public.role)));
do $$ begin if not exists (select from pg_roles where rolname = 'aleph') then create role aleph; end if; end $$;`;

const databases: TestDatabase[] = [];
const scratch = mkdtempSync(path.join(tmpdir(), "rolesync-docs-"));
afterAll(async () => {
  for (const db of databases) await db.drop();
  rmSync(scratch, { recursive: true, force: true });
});

/** The file's working folder, with the CLI, the Python package and the TypeScript package in reach. */
function sandbox(file: string): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = path.join(scratch, file.replace(/[^a-z0-9]+/gi, "-"));
  const bin = path.join(dir, ".bin");
  mkdirSync(bin, { recursive: true });
  const cli = path.join(packageRoot, "dist", "bin.js");
  writeFileSync(path.join(bin, "rolesync"), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`);
  // `npx rolesync …` as a user who installed the tarball gets it; any other npx goes to npm's.
  writeFileSync(
    path.join(bin, "npx"),
    `#!/bin/sh\nif [ "$1" = rolesync ]; then shift; exec "${process.execPath}" "${cli}" "$@"; fi\nexec npx "$@"\n`,
  );
  for (const f of ["rolesync", "npx"]) chmodSync(path.join(bin, f), 0o755);
  symlinkSync(path.join(packageRoot, "python"), path.join(dir, "python"));
  mkdirSync(path.join(dir, "node_modules"));
  symlinkSync(packageRoot, path.join(dir, "node_modules", "rolesync"));
  symlinkSync(path.join(packageRoot, "node_modules", "pg"), path.join(dir, "node_modules", "pg"));
  const venvBin = path.join(VENV, "bin");
  return {
    dir,
    env: {
      ...process.env,
      PATH: [bin, ...(existsSync(venvBin) ? [venvBin] : []), process.env.PATH].join(path.delimiter),
      PIP_DISABLE_PIP_VERSION_CHECK: "1",
      ROLESYNC_APP_ROLE: "aleph",
    },
  };
}

function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; input?: string }): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, output }));
    child.stdin.end(opts.input ?? "");
  });
}

/** The psql command lines inside a docker-compose or Helm block, made to run against `url` here. */
export function psqlLines(block: Block, url: string, scriptDir: string): string[][] {
  const lines: string[][] = [];
  if (block.lang === "yaml") {
    const m = /command: (\[.*"psql".*\])/.exec(block.code);
    if (m) {
      lines.push(
        (JSON.parse(m[1]) as string[]).map((a) =>
          a === "$(ALEPH_DATABASE_URI)" ? url : a.startsWith("/sql/") ? path.join(scriptDir, path.basename(a)) : a,
        ),
      );
    }
    return lines;
  }
  for (const l of block.code.split("\n")) {
    const m = /^docker compose exec -T postgres (psql .*)$/.exec(l.trim());
    if (!m) continue;
    // `-U aleph -d aleph` is the container's database: here it is the test database's URL.
    const words = m[1].replace(/ -U \S+ -d \S+/, ` -d ${url}`).match(/'[^']*'|\S+/g)!;
    lines.push(words.map((w) => (w.startsWith("'") ? w.slice(1, -1) : w)));
  }
  return lines;
}

async function serverMajorOf(url: string): Promise<number> {
  return withPgClient(url, async (c) => Number((await c.query("select current_setting('server_version_num')::int / 10000 as m")).rows[0].m));
}

async function pgDumpMajor(): Promise<number> {
  const r = await run("pg_dump", ["--version"], { cwd: scratch, env: process.env }).catch(() => ({ code: 1, output: "" }));
  return Number(/(\d+)\.\d+/.exec(r.output)?.[1] ?? 0);
}

const tally = { ran: 0, skipped: new Map<string, number>(), psqlLines: 0 };
afterAll(() => {
  const skipped = [...tally.skipped].map(([r, n]) => `${n} ${r}`).join(", ");
  console.log(`docs: ${tally.ran} code blocks ran, ${[...tally.skipped.values()].reduce((a, b) => a + b, 0)} skipped (${skipped || "none"}); ${tally.psqlLines} psql lines of docker-compose and Helm blocks ran here`);
});

describe.each(FILES)("%s", (file) => {
  test("every code block runs, in order, or says why it cannot", async () => {
    const text = readFileSync(path.join(packageRoot, file), "utf8");
    const all = blocks(file, text);
    const db = await alephDatabase("4.0", { dirty: true });
    databases.push(db);
    await withPgClient(db.url, (c) => c.query(SEED));
    if (!FROM_SCRATCH.has(file)) await runMigrations({ databaseUrl: db.url, appRole: "aleph" });
    const { dir, env } = sandbox(file);
    env.DATABASE_URL = db.url;
    const serverMajor = await serverMajorOf(db.url);
    const dumpMajor = await pgDumpMajor();

    for (const b of all) {
      const where = `${file}:${b.line}`;
      if (b.skip !== null) {
        expect(REASONS as readonly string[], `${where}: "${b.skip}" is not one of the reasons`).toContain(b.skip);
        tally.skipped.set(b.skip, (tally.skipped.get(b.skip) ?? 0) + 1);
        for (const argv of psqlLines(b, db.url, dir)) {
          const r = await run(argv[0], argv.slice(1), { cwd: dir, env });
          expect(r.code, `${where}, its psql line ${argv.join(" ")}:\n${r.output}`).toBe(0);
          tally.psqlLines++;
        }
        continue;
      }
      // pg_dump must be at least the server's major: Debian 12's 15 dumps 10 to 15.
      if (/^\s*pg_dump\b/m.test(b.code) && dumpMajor < serverMajor) {
        const reason = `needs a pg_dump as new as the server (pg_dump ${dumpMajor}, PostgreSQL ${serverMajor})`;
        tally.skipped.set(reason, (tally.skipped.get(reason) ?? 0) + 1);
        continue;
      }
      let r: { code: number; output: string };
      switch (b.lang) {
        case "sh":
        case "bash":
          r = await run("bash", ["-o", "pipefail", "-c", b.code], { cwd: dir, env });
          break;
        case "sql":
          r = await run("psql", ["-X", "-v", "ON_ERROR_STOP=1", "-f", "-"], { cwd: dir, env: { ...env, ...pgEnv(db.url) }, input: b.code });
          break;
        case "ts": {
          const f = path.join(dir, `block-${b.line}.mts`);
          writeFileSync(f, b.code);
          r = await run(path.join(packageRoot, "node_modules", ".bin", "tsx"), [f], { cwd: dir, env });
          break;
        }
        case "python": {
          const python = path.join(VENV, "bin", "python");
          if (!existsSync(python)) {
            // npm test made no Python environment here (no python3 or no venv module): it says so, and so does this.
            const reason = "needs Python 3 with its venv module (not on this machine)";
            tally.skipped.set(reason, (tally.skipped.get(reason) ?? 0) + 1);
            continue;
          }
          r = await run(python, ["-c", b.code], { cwd: dir, env });
          break;
        }
        default:
          throw new Error(`${where}: a \`${b.lang || "plain"}\` block runs nowhere; mark it <!-- docs: <reason> --> (one of: ${REASONS.join("; ")})`);
      }
      expect(r.code, `${where} (${b.lang}) failed:\n${b.code}\n--- output\n${r.output}`).toBe(0);
      tally.ran++;
    }
  });
});
