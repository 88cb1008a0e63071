/*
 * One home for each fact (issue #12): src/sqlstates.ts is the one list of the
 * SQLSTATEs rolesync raises or documents. These tests fail when another copy
 * disagrees with it: the README's table (rendered from it), the SQL and the
 * TypeScript that raise the codes (the SQL cannot import it: released
 * migrations are immutable), the client's typed errors and the CLI's hints.
 * No database needed.
 */
import { describe, expect, test } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { packageRoot } from "../src/migrate.ts";
import { SQLSTATES, sqlstate } from "../src/sqlstates.ts";
import * as client from "../src/client.ts";
import { buildProgram, hintFor } from "../src/cli.ts";
import { PYTHON_TABLE, README, readmeSection, renderPython, renderSection } from "../scripts/tools/sqlstates.ts";

const TABLE = new Set(SQLSTATES.map((s) => s.code));
const RS_TABLE = SQLSTATES.map((s) => s.code).filter((c) => c.startsWith("RS"));

interface Source {
  file: string;
  text: string;
}

/** Every file under `dir` (relative to the package) whose name ends with `ext`, recursively. */
function sources(dir: string, ext: string, skip: (file: string) => boolean = () => false): Source[] {
  return readdirSync(path.join(packageRoot, dir), { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith(ext))
    .map((d) => path.relative(packageRoot, path.join(d.parentPath, d.name)))
    .filter((file) => !skip(file))
    .sort()
    .map((file) => ({ file, text: readFileSync(path.join(packageRoot, file), "utf8") }));
}

/** Each match of `re`'s first group, with where it is: code → ["file:line", …]. */
function occurrences(files: Source[], re: RegExp): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const { file, text } of files) {
    for (const m of text.matchAll(new RegExp(re.source, re.flags.includes("g") ? re.flags : re.flags + "g"))) {
      const line = text.slice(0, m.index).split("\n").length;
      found.set(m[1], [...(found.get(m[1]) ?? []), `${file}:${line}`]);
    }
  }
  return found;
}

/** The codes of `found` not in the table, with where they are. */
function notInTable(found: Map<string, string[]>): Record<string, string[]> {
  return Object.fromEntries([...found].filter(([code]) => !TABLE.has(code)));
}

/** TypeScript without its comments (block comments, and // comments after a blank or at a line's start). */
function withoutComments(ts: string): string {
  return ts.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|\s)\/\/.*$/gm, "$1");
}

// migrations/ (committed, hooks, conditions, compat; not the scratch file current.sql) and src/, this list aside.
const SQL = sources("migrations", ".sql", (f) => f === path.join("migrations", "current.sql"));
const TS = sources("src", ".ts", (f) => f === path.join("src", "sqlstates.ts"));
const CLIENT_AND_CLI = TS.filter((s) => ["client.ts", "cli.ts"].includes(path.basename(s.file)));

describe("src/sqlstates.ts", () => {
  test("one entry per SQLSTATE, each with where it comes from, what it means and what to do", () => {
    expect(SQLSTATES.length).toBeGreaterThan(0);
    expect(TABLE.size, "a code is listed twice").toBe(SQLSTATES.length);
    for (const s of SQLSTATES) {
      expect(s.code).toMatch(/^[0-9A-Z]{5}$/);
      for (const field of [s.from, s.when, s.todo, s.cliHint ?? "x"]) {
        expect(field.trim(), s.code).not.toBe("");
        expect(field, s.code).not.toMatch(/[\r\n]/);
      }
      expect(sqlstate(s.code)).toBe(s);
    }
    expect(sqlstate("XX999")).toBeUndefined();
    expect(Object.isFrozen(SQLSTATES) && SQLSTATES.every(Object.isFrozen)).toBe(true);
  });
});

describe("the Python client's table", () => {
  test("python/src/rolesync/_sqlstates.py is, byte for byte, the table rendered from src/sqlstates.ts", () => {
    expect(readFileSync(PYTHON_TABLE, "utf8")).toBe(renderPython());
  });

  test("names, for each code with a typed error, a class python/src/rolesync/errors.py defines", () => {
    const errors = readFileSync(path.join(packageRoot, "python", "src", "rolesync", "errors.py"), "utf8");
    for (const s of SQLSTATES.filter((x) => x.error)) expect(errors).toMatch(new RegExp(`^class ${s.error}\\(RolesyncError\\):`, "m"));
  });
});

describe("the SQLSTATE table of docs/errors.md", () => {
  const readme = readFileSync(README, "utf8");

  test("lists the same codes in the same order", () => {
    const codes = [...readmeSection(readme).matchAll(/^\| `([0-9A-Z]{5})` \|/gm)].map((m) => m[1]);
    expect(codes).toEqual(SQLSTATES.map((s) => s.code));
  });

  test("is, byte for byte, the table rendered from src/sqlstates.ts (`npm run docs:sqlstates` rewrites it)", () => {
    expect(readmeSection(readme)).toBe(renderSection());
  });

  test("every RS code the README and docs/ name is in the table", () => {
    const docs = [{ file: "README.md", text: readFileSync(path.join(packageRoot, "README.md"), "utf8") }, ...sources("docs", ".md")];
    expect(notInTable(occurrences(docs, /\b(RS\d{3})\b/))).toEqual({});
  });
});

describe("the codes raised", () => {
  test("every RS code that migrations/ or src/ raise or name is in the table", () => {
    expect(notInTable(occurrences([...SQL, ...TS], /\b(RS\d{3})\b/))).toEqual({});
  });

  test("every RS code in the table is raised somewhere in migrations/ or src/", () => {
    const raised = new Set([
      ...occurrences([...SQL, ...TS], /errcode\s*=\s*'(RS\d{3})'/).keys(),
      // The runner's own errors: new MigrationError(message, "RS013", hint).
      ...occurrences(TS.map((s) => ({ ...s, text: withoutComments(s.text) })), /["'`](RS\d{3})["'`]/).keys(),
    ]);
    expect(RS_TABLE.filter((code) => !raised.has(code))).toEqual([]);
  });

  test("every SQLSTATE the SQL raises (errcode = '…'), standard or rolesync's, is in the table", () => {
    expect(notInTable(occurrences([...SQL, ...TS], /errcode\s*=\s*'([0-9A-Z]{5})'/))).toEqual({});
  });
});

describe("src/client.ts and src/cli.ts read the table", () => {
  test("no RS code of their own: no RS literal or key in their code, and every one they mention is in the table", () => {
    for (const { file, text } of CLIENT_AND_CLI) {
      const code = withoutComments(text);
      expect(code.match(/["'`]RS\d{3}["'`]|\bRS\d{3}\s*:/g), `${file}: an RS code written out; take it from src/sqlstates.ts`).toBeNull();
      expect(notInTable(occurrences([{ file, text }], /\b(RS\d{3})\b/))).toEqual({});
      expect(code).toMatch(/from "\.\/sqlstates\.ts"/);
    }
  });

  test("every SQLSTATE literal in their code is in the table", () => {
    const literals = occurrences(
      CLIENT_AND_CLI.map((s) => ({ ...s, text: withoutComments(s.text) })),
      /["'`]((?=[0-9A-Z]{5}["'`])[A-Z]*\d[0-9A-Z]*)["'`]/,
    );
    expect(notInTable(literals)).toEqual({});
  });

  test("the client types each code as the table says, and passes the others through", () => {
    const classes = client as unknown as Record<string, new (...args: never[]) => Error>;
    for (const s of SQLSTATES) {
      const pgError = Object.assign(new Error(`boom ${s.code}`), { code: s.code, hint: "h" });
      const typed = client.toRolesyncError(pgError);
      if (s.error) {
        expect(typed, s.code).toBeInstanceOf(classes[s.error]);
        expect(typed).toMatchObject({ name: s.error, code: s.code, hint: "h", message: `boom ${s.code}` });
      } else {
        expect(typed, s.code).toBe(pgError);
      }
    }
    const other = Object.assign(new Error("other"), { code: "XX000" });
    expect(client.toRolesyncError(other)).toBe(other);
  });

  test("each typed error's doc comment names exactly the codes the table maps to it", () => {
    const text = readFileSync(path.join(packageRoot, "src", "client.ts"), "utf8");
    const documented = new Map<string, string[]>();
    for (const m of text.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*export class (\w+) extends RolesyncError\b/g)) {
      const lead = /^\s*([0-9A-Z]{5}(?:\s*\/\s*[0-9A-Z]{5})*):/.exec(m[1]);
      // NotInstalledError and OutdatedError are typed by what failed (a 42883 naming rolesync's own
      // function), not by a code alone: the table lists 42883 without a class, their comments lead with none.
      if (lead) documented.set(m[2], lead[1].split("/").map((c) => c.trim()).sort());
      else expect(["NotInstalledError", "OutdatedError"], `${m[2]}'s comment names no code`).toContain(m[2]);
    }
    const mapped = new Map<string, string[]>();
    for (const s of SQLSTATES) if (s.error) mapped.set(s.error, [...(mapped.get(s.error) ?? []), s.code].sort());
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(mapped));
  });

  test("the CLI's hint for a code without a server HINT is the table's", () => {
    for (const s of SQLSTATES) {
      const hint = hintFor(s.code);
      if (s.cliHint) expect(hint).toBe(s.cliHint);
      else expect(hint.toLowerCase()).toContain(s.todo.slice(0, -1).toLowerCase());
      expect(hint).toMatch(/^[^a-z].*[.!?]$/);
    }
    expect(hintFor("XX000")).toBe("See the SQLSTATE table in docs/errors.md.");
  });

  test("57014's statement-timeout default is the CLI's", () => {
    const option = buildProgram().options.find((o) => o.long === "--statement-timeout");
    const seconds = /else (\d+)\)$/.exec(option?.description ?? "")?.[1];
    expect(seconds).toMatch(/^\d+$/);
    const s = sqlstate("57014")!;
    for (const text of [s.when, s.todo, s.cliHint ?? ""]) {
      for (const m of text.matchAll(/default (\d+) s\b/g)) expect(m[1]).toBe(seconds);
    }
  });
});
