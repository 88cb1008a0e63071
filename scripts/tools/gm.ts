/*
 * graphile-migrate's development workflow (`npm run db:watch`, `db:commit`,
 * `db:uncommit`, `db:reset`) with the environment it needs filled in from
 * DATABASE_URL: the shadow database (<name>_shadow on the same server), the
 * root connection (the `postgres` database) and the app-role placeholder
 * (the connecting user). Any of them set explicitly wins.
 */
import { $ } from "zx";
import path from "node:path";
import { withDatabase, databaseName } from "../server/db.ts";
import { packageRoot } from "../../src/migrate.ts";

const url = process.env.DATABASE_URL;
if (!url) {
  console.error(
    "rolesync: DATABASE_URL is not set.\n" +
      "hint: point it at a development database, e.g.\n" +
      "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/rolesync_dev npm run db:watch",
  );
  process.exit(2);
}
const env = {
  ...process.env,
  SHADOW_DATABASE_URL: process.env.SHADOW_DATABASE_URL ?? withDatabase(url, `${databaseName(url)}_shadow`),
  ROOT_DATABASE_URL: process.env.ROOT_DATABASE_URL ?? withDatabase(url, "postgres"),
  ROLESYNC_APP_ROLE:
    process.env.ROLESYNC_APP_ROLE ?? (decodeURIComponent(new URL(url).username) || "postgres"),
};
const bin = path.join(packageRoot, "node_modules", ".bin", "graphile-migrate");
const result = await $({ cwd: packageRoot, env, stdio: "inherit", nothrow: true })`${bin} ${process.argv.slice(2)}`;
process.exit(result.exitCode ?? 1);
