/*
 * The migrated template every test database is cloned from
 * (CREATE DATABASE ... TEMPLATE), as graphile-worker's tests do: migrate and
 * provision pgTAP once, then each test file gets its own database in
 * milliseconds and files can run in parallel.
 */
import { createDatabase, dropDatabase, uniqueName, withClient, type Server } from "../server/db.ts";
import { installPgTap } from "./pgtap.ts";
import { runMigrations } from "../../src/migrate.ts";

/** The application role the tests grant to, as an app's would be. */
export const APP_ROLE = "rolesync_app";

export async function ensureAppRole(server: Server): Promise<void> {
  await withClient(server.adminUrl, async (c) => {
    try {
      await c.query(`do $$ begin
        if not exists (select from pg_catalog.pg_roles where rolname = '${APP_ROLE}') then
          create role ${APP_ROLE} nologin;
        end if; end $$`);
    } catch (e) {
      // Another run on the same server created it first.
      if ((e as { code?: string }).code !== "23505" && (e as { code?: string }).code !== "42710") throw e;
    }
  });
}

export async function prepareTemplate(server: Server, log: (s: string) => void = () => {}): Promise<string> {
  const name = uniqueName("rolesync_template");
  await createDatabase(server, name);
  try {
    await ensureAppRole(server);
    const started = Date.now();
    // A standalone database: Aleph's tables come from the opt-in, as Aleph 4.1.6 has them.
    await runMigrations({ databaseUrl: server.url(name), appRole: APP_ROLE, createAlephSchema: true });
    const source = await withClient(server.url(name), (c) => installPgTap(c, log));
    log(`template ${name}: migrated, pgTAP from ${source}, in ${Date.now() - started} ms`);
  } catch (e) {
    await dropDatabase(server, name).catch(() => {});
    throw e;
  }
  return name;
}

export async function cloneTemplate(server: Server, template: string, prefix = "rolesync_test"): Promise<string> {
  const name = uniqueName(prefix);
  await createDatabase(server, name, template);
  return name;
}
