/*
 * What rolesync adds to public, read from its own migrations, in one place:
 * the schema file (scripts/tools/schema.ts) lists these objects, and `rolesync
 * uninstall` drops them. Read from the files rather than listed by hand, so
 * that an object a later migration adds is in both without a change here.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const packageRoot = fileURLToPath(new URL("..", import.meta.url));

/** Aleph's tables and type, which rolesync works on and never creates or drops (outside the opt-in). */
export const ALEPH_BASE = ["role", "role_membership", "role_type"] as const;

/**
 * The names of the objects rolesync's migrations create in public (functions,
 * views, tables, types, sequences), read from every committed migration and
 * every compat variant, with Aleph's base objects (ALEPH_BASE) included.
 */
export function publicNames(migrationsFolder = path.join(packageRoot, "migrations")): string[] {
  const names = new Set<string>(ALEPH_BASE);
  const folders = [path.join(migrationsFolder, "committed")];
  const compat = path.join(migrationsFolder, "compat");
  if (existsSync(compat)) {
    for (const d of readdirSync(compat)) folders.push(path.join(compat, d));
  }
  const create =
    /\bcreate\s+(?:or\s+replace\s+)?(?:materialized\s+)?(?:function|procedure|aggregate|view|table|type|domain|sequence)\s+(?:if\s+not\s+exists\s+)?public\.("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)/gi;
  for (const folder of folders) {
    for (const file of readdirSync(folder).filter((f) => f.endsWith(".sql")).sort()) {
      const sql = readFileSync(path.join(folder, file), "utf8");
      for (const m of sql.matchAll(create)) {
        const raw = m[1];
        names.add(raw.startsWith('"') ? raw.slice(1, -1).replace(/""/g, '"') : raw.toLowerCase());
      }
    }
  }
  return [...names].sort();
}

/** rolesync's own objects in public: publicNames() without Aleph's. */
export function rolesyncPublicNames(migrationsFolder?: string): string[] {
  const aleph = new Set<string>(ALEPH_BASE);
  return publicNames(migrationsFolder).filter((n) => !aleph.has(n));
}
