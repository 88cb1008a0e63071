/*
 * The committed schema file (schema/rolesync.sql, or schema/rolesync.pg10-11.sql
 * on PostgreSQL 10 and 11) is what the migrations give: a migration that
 * changes the schema must come with the regenerated file (`npm run db:schema`),
 * so that a review sees the change as a diff of the schema, not only of the
 * migration. scripts/tools/schema.ts writes it; this reads the template's clone the
 * same way and compares.
 */
import { afterAll, beforeAll, expect, test } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { commandFor, describeSchema, OWNER_PLACEHOLDER, schemaFileFor, schemaFileText, SCHEMA_COMMAND } from "../scripts/tools/schema.ts";
import { APP_ROLE } from "../scripts/test/harness.ts";
import { connect, createTestDatabase, serverMajor, withPgClient, type TestDatabase } from "./helpers.ts";
import { runMigrations } from "../src/migrate.ts";

const packageRoot = fileURLToPath(new URL("..", import.meta.url));
let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = await connect(db.url);
});
afterAll(async () => {
  await client?.end();
  await db?.drop();
});

/**
 * The first differences between two texts, diff-style: per hunk two lines of
 * context, then the committed lines (-) and the migrated ones (+), at most
 * `maxLines` of each and `maxHunks` hunks. A line-by-line LCS: the files are
 * a few hundred lines.
 */
function compactDiff(committed: string, migrated: string, maxHunks = 3, maxLines = 8): string {
  const a = committed.split("\n");
  const b = migrated.split("\n");
  // lcs[i][j]: the length of the longest common subsequence of a[i..] and b[j..].
  const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const hunks: string[] = [];
  let total = 0;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      i++, j++;
      continue;
    }
    const start = i;
    const removed: string[] = [];
    const added: string[] = [];
    while ((i < a.length || j < b.length) && !(i < a.length && j < b.length && a[i] === b[j])) {
      if (j >= b.length || (i < a.length && lcs[i + 1][j] >= lcs[i][j + 1])) removed.push(a[i++]);
      else added.push(b[j++]);
    }
    total++;
    if (hunks.length >= maxHunks) continue;
    const part = (lines: string[], sign: string) => [
      ...lines.slice(0, maxLines).map((l) => `${sign} ${l}`),
      ...(lines.length > maxLines ? [`${sign} … and ${lines.length - maxLines} more`] : []),
    ];
    hunks.push(
      [
        `@@ line ${start + 1} of the committed file @@`,
        ...a.slice(Math.max(0, start - 2), start).map((l) => `  ${l}`),
        ...part(removed, "-"),
        ...part(added, "+"),
      ].join("\n"),
    );
  }
  if (total > hunks.length) hunks.push(`… and ${total - hunks.length} more difference(s)`);
  return hunks.join("\n");
}

test("the committed schema file is the schema the migrations give", async () => {
  const major = await serverMajor(client);
  const file = schemaFileFor(major);
  const shown = path.relative(packageRoot, file);
  const migrated = schemaFileText(major, await describeSchema(client));
  const committed = existsSync(file) ? readFileSync(file, "utf8").replace(/\r\n/g, "\n") : null;
  if (committed === migrated) return;
  const others =
    major <= 11
      ? `(PostgreSQL 10 and 11 have ${shown}; \`${SCHEMA_COMMAND}\` writes schema/rolesync.sql for 12 to 18)`
      : "(and `npm run db:schema -- --pg 11` for schema/rolesync.pg10-11.sql, if the change reaches PostgreSQL 10 and 11)";
  throw new Error(
    (committed === null
      ? `${shown} is missing: PostgreSQL ${major}'s migrated schema has no committed file.`
      : `${shown} differs from the schema the migrations give on PostgreSQL ${major}.`) +
      `\nRun \`${commandFor(major)}\` and commit the result ${others}.\n\n` +
      (committed === null ? "" : compactDiff(committed, migrated)),
  );
});

test("describeSchema is stable, and names neither the migrating role nor any OID", async () => {
  const first = await describeSchema(client);
  const second = await describeSchema(client);
  expect(second).toBe(first);
  expect(first).toContain("CREATE TABLE public.role_membership (");
  expect(first).toContain("CREATE SCHEMA rolesync;");

  const { rows } = await client.query<{ me: string }>("select current_user as me");
  const me = rows[0].me;
  const word = new RegExp(`(^|[^\\w$])${me.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}([^\\w$]|$)`);
  expect(word.test(first), `describeSchema names the connecting role ${me}`).toBe(false);
  // Every role it names is one of these: the owner is written as a placeholder.
  const roles = new Set([
    ...[...first.matchAll(/; Owner: ([^;\n]+)/g)].map((m) => m[1]),
    ...[...first.matchAll(/^GRANT .* TO (\S+?)(?: WITH GRANT OPTION)?(?: GRANTED BY (\S+))?;$/gm)].flatMap((m) =>
      m[2] ? [m[1], m[2]] : [m[1]],
    ),
  ]);
  expect(roles).toContain(OWNER_PLACEHOLDER);
  expect([...roles].filter((r) => ![OWNER_PLACEHOLDER, "PUBLIC", APP_ROLE].includes(r))).toEqual([]);

  // No OID of anything in this database (catalog OIDs below 16384 are the same everywhere).
  const { rows: oids } = await client.query<{ oid: string }>(
    `select oid::text from (
       select oid from pg_catalog.pg_class union all select oid from pg_catalog.pg_proc
       union all select oid from pg_catalog.pg_type union all select oid from pg_catalog.pg_namespace
       union all select oid from pg_catalog.pg_constraint union all select oid from pg_catalog.pg_trigger
       union all select oid from pg_catalog.pg_attrdef union all select oid from pg_catalog.pg_rewrite
       union all select oid from pg_catalog.pg_roles union all select oid from pg_catalog.pg_database) o
      where oid >= 16384`,
  );
  // Function bodies and string literals are the migrations' own text (SQLSTATEs such as 22004, which an OID may equal).
  const catalogText = first.replace(/\$([a-z_]*)\$[\s\S]*?\$\1\$/gi, "$$$$").replace(/'(?:[^']|'')*'/g, "''");
  const numbers = new Set(catalogText.match(/\b\d+\b/g) ?? []);
  expect(oids.map((o) => o.oid).filter((o) => numbers.has(o))).toEqual([]);
  // pg_get_userbyid's answer for a role that no longer exists.
  expect(first).not.toMatch(/\bOID\s*=/);
});

/*
 * The file is read from the catalogs because pg_dump must be at least the
 * server's major, and the embedded servers ship none (Debian 12's is 15).
 * Where the machine's pg_dump can read the server (10 to 15 here, in CI the
 * PostgreSQL 15 service and the embedded 10 to 14), its own dump must name
 * the same objects and carry the same comments as the file.
 */
const pgDump = execFileSync("sh", ["-c", "pg_dump --version 2>/dev/null || true"], { encoding: "utf8" });
const pgDumpMajor = Number(/\(PostgreSQL\) (\d+)/.exec(pgDump)?.[1] ?? 0);
// The harness names the server it runs on: "PostgreSQL 15 (external)".
const serverMajorNow = Number(/PostgreSQL (\d+)/.exec(process.env.ROLESYNC_TEST_SERVER ?? "")?.[1] ?? 0);
if (pgDumpMajor > 0 && serverMajorNow > 0 && serverMajorNow <= pgDumpMajor) {
  test(`pg_dump ${pgDumpMajor} --schema-only of the migrated database names the same objects and comments as the file`, async () => {
    // Migrated as the template is, without pgTAP (loaded from its SQL file, pgTAP's functions would be in the dump).
    const fresh = await createTestDatabase({ empty: true });
    let dump: string;
    let mine: string;
    try {
      await runMigrations({ databaseUrl: fresh.url, appRole: APP_ROLE, createAlephSchema: true });
      dump = execFileSync("pg_dump", ["--schema-only", "--exclude-schema=graphile_migrate", `--dbname=${fresh.url}`], {
        encoding: "utf8",
      });
      mine = await withPgClient(fresh.url, (c) => describeSchema(c));
    } finally {
      await fresh.drop();
    }
    expect(mine).toBe(await describeSchema(client));
    // pg_dump's table of contents, one entry per object: "-- Name: …; Type: …; Schema: …; Owner: …".
    const entries = (text: string) =>
      [...text.matchAll(/^-- Name: (.+?); Type: ([A-Z ]+?); Schema: ([^;\n]+)/gm)].map((m) => ({
        name: m[1],
        type: m[2] === "FK CONSTRAINT" ? "CONSTRAINT" : m[2],
        schema: m[3],
      }));
    const schemaEntries = (text: string) =>
      [...text.matchAll(/^-- Name: ([^;\n]+); Type: SCHEMA;/gm)].map((m) => `${m[1]}|SCHEMA|`);
    // The entries pg_dump writes apart and the file writes with their object.
    const apart = new Set(["COMMENT", "ACL", "DEFAULT", "SEQUENCE OWNED BY", "DEFAULT ACL", "EXTENSION"]);
    const objects = (text: string) =>
      [
        ...entries(text)
          .filter((e) => !apart.has(e.type) && e.schema !== "-")
          .map((e) => `${e.name}|${e.type}|${e.schema}`),
        ...schemaEntries(text).filter((s) => s !== "public|SCHEMA|"),
      ].sort();
    // pg_dump writes a CHECK constraint inside its CREATE TABLE; the file gives it an entry of its own.
    const inlineChecks = [...dump.matchAll(/^CREATE TABLE (\w+)\.(\w+) \(([\s\S]*?)\n\);/gm)].flatMap((t) =>
      [...t[3].matchAll(/CONSTRAINT (\w+) CHECK/g)].map((c) => `${t[2]} ${c[1]}|CONSTRAINT|${t[1]}`),
    );
    expect(inlineChecks.length).toBeGreaterThan(0);
    expect(objects(mine)).toEqual([...objects(dump), ...inlineChecks].sort());
    expect(objects(mine).length).toBeGreaterThan(30);
    expect((mine.match(/^COMMENT ON /gm) ?? []).length).toBe(
      entries(dump).filter((e) => e.type === "COMMENT" && !/^(SCHEMA public|EXTENSION )/.test(e.name)).length,
    );
  });
}
