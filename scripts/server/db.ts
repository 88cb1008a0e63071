/*
 * The one database harness. `npm test`, the demo, the bench and vitest's
 * global setup all get their server and their databases from here.
 *
 * With DATABASE_URL set, its server is used (databases are created beside the
 * one it names, and dropped afterwards). Without it, a throwaway embedded
 * PostgreSQL is started (scripts/server/embedded.ts) and stopped after: 17, or the
 * major ROLESYNC_PG_MAJOR names (10 to 18). With both set, the server's major
 * must be the one named.
 */
import pg from "pg";
import { databaseUrlProblem, withClient, redact } from "../../src/pg.ts";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { MAJOR_ENV, OneLineError, onInterrupt, requestedMajor, startEmbedded } from "./embedded.ts";

export interface Server {
  /** "embedded": started by this process; "external": DATABASE_URL's server. */
  kind: "embedded" | "external";
  /** Connection string for another database on the same server. */
  url(database: string): string;
  /** The database CREATE/DROP DATABASE are run from. */
  adminUrl: string;
  /** Server major version, e.g. 15 or 17. */
  major: number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /**
   * Durable keeps fsync and full-page writes on, as a production server has
   * them: the bench needs that for its WAL numbers. Tests don't.
   */
  durable?: boolean;
  log?: (line: string) => void;
}

/** Replaces the database name in a connection string. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = "/" + encodeURIComponent(database);
  return u.toString();
}

export function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, "")) || "postgres";
}

export { withClient, redact } from "../../src/pg.ts";

async function serverMajor(url: string): Promise<number> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ v: string }>(
      "select current_setting('server_version_num') as v",
    );
    return Math.floor(Number(rows[0].v) / 10000);
  });
}

/** A server someone else runs, reached through one of its databases. */
export function externalServer(adminUrl: string, major = 0): Server {
  return {
    kind: "external",
    url: (db) => withDatabase(adminUrl, db),
    adminUrl,
    major,
    stop: async () => {},
  };
}

/**
 * DATABASE_URL, checked as the CLI checks it (src/pg.ts), so that a URL pg
 * cannot read fails with what is wrong with it, not `getaddrinfo ENOTFOUND
 * base`. Never quotes the URL, which may hold a password.
 */
export function checkDatabaseUrl(): void {
  const url = process.env.DATABASE_URL;
  const problem = url ? databaseUrlProblem(url) : null;
  if (problem) {
    throw new OneLineError(
      `DATABASE_URL is not a PostgreSQL URL: ${problem}. Give it as postgres://user:password@host:5432/dbname ` +
        "(percent-encode reserved characters), or unset it to use an embedded PostgreSQL",
    );
  }
}

export async function startServer(opts: StartOptions = {}): Promise<Server> {
  const log = opts.log ?? (() => {});
  checkDatabaseUrl();
  const requested = requestedMajor();
  const external = process.env.DATABASE_URL;
  if (external) {
    const major = await serverMajor(external).catch((e: Error) => {
      throw new Error(
        `cannot connect to DATABASE_URL (${redact(external)}): ${e.message}\n` +
          "hint: check the server is running, or unset DATABASE_URL to use an embedded PostgreSQL",
      );
    });
    if (requested !== null && requested !== major) {
      throw new OneLineError(
        `${MAJOR_ENV}=${requested}, but DATABASE_URL's server (${redact(external)}) is PostgreSQL ${major}: ` +
          `unset ${MAJOR_ENV} to use that server, or unset DATABASE_URL to run an embedded PostgreSQL ${requested}`,
      );
    }
    log(`using PostgreSQL ${major} at ${redact(external)}`);
    return externalServer(external, major);
  }

  const settings = [
    "max_connections=200",
    ...(opts.durable ? [] : ["fsync=off", "full_page_writes=off", "synchronous_commit=off"]),
  ];
  // Its own lines go to `log`; without one, a download's line still reaches stderr.
  const embedded = await startEmbedded({ settings, log: opts.log });
  const major = await serverMajor(embedded.url);
  if (requested !== null && requested !== major) {
    // Only ROLESYNC_PG_BIN_DIR can bring this about: its binaries are another major's.
    await embedded.stop();
    throw new OneLineError(
      `${MAJOR_ENV}=${requested}, but the binaries in ROLESYNC_PG_BIN_DIR (${process.env.ROLESYNC_PG_BIN_DIR}) are PostgreSQL ${major}: ` +
        `unset one of the two`,
    );
  }
  log(`started embedded PostgreSQL ${major}`);
  return {
    kind: "embedded",
    url: (db) => withDatabase(embedded.url, db),
    adminUrl: embedded.url,
    major,
    stop: embedded.stop,
  };
}

/**
 * startServer for a script's top level: a server that cannot be had is one
 * line on stderr (what went wrong, what to do) and exit code 1, not a stack.
 */
export async function startServerOrExit(opts: StartOptions & { name: string; dropOnInterrupt?: boolean }): Promise<Server> {
  try {
    const server = await startServer(opts);
    if (opts.dropOnInterrupt && server.kind === "external") dropOnInterrupt.set(server, opts.name);
    return server;
  } catch (e) {
    const known = e instanceof OneLineError || /^cannot connect to DATABASE_URL/.test((e as Error).message);
    console.error(`${opts.name}: ${known ? (e as Error).message.replace(/\n/g, " ") : ((e as Error).stack ?? e)}`);
    process.exit(1);
  }
}

/**
 * Servers from DATABASE_URL whose script asked for it (the demo, the bench),
 * with the script's name: a database made on one is dropped if the run is
 * interrupted (Ctrl-C), as an embedded server's folder is removed. `npm test`
 * handles its own interruption and drops its databases itself.
 */
const dropOnInterrupt = new WeakMap<Server, string>();
/** The interrupt cleanups of the databases made and not yet dropped, by server and name. */
const pendingDrops = new Map<string, () => void>();
const dropKey = (server: Server, name: string) => `${server.adminUrl}\0${name}`;

/** A database name that cannot collide with another run's on a shared server. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${randomBytes(3).toString("hex")}`;
}

export async function createDatabase(
  server: Server,
  name: string,
  template?: string,
): Promise<string> {
  await withClient(server.adminUrl, (c) =>
    c.query(
      `create database ${pg.escapeIdentifier(name)}` +
        (template ? ` template ${pg.escapeIdentifier(template)}` : ""),
    ),
  );
  const script = dropOnInterrupt.get(server);
  if (script) {
    pendingDrops.set(
      dropKey(server, name),
      onInterrupt(async () => {
        // Bounded: a server that stopped answering must not keep the process alive.
        const outcome = await Promise.race([
          dropDatabase(server, name).then(
            () => `dropped database ${name} on DATABASE_URL's server`,
            (e: Error) => `could not drop database ${name} on DATABASE_URL's server (${e.message}): drop it by hand`,
          ),
          sleep(15_000, `database ${name} on DATABASE_URL's server was not dropped within 15 s: drop it by hand`, { ref: false }),
        ]);
        console.error(`${script}${script.startsWith("[") ? "" : ":"} interrupted; ${outcome}`);
      }),
    );
  }
  return server.url(name);
}

/**
 * Drops a database even while sessions are connected to it. PostgreSQL 13+
 * does that itself (WITH (FORCE)); before 13 the other sessions are
 * terminated first, and the drop is retried while a session that connected
 * meanwhile still holds it (55006, object_in_use). The version is asked of the
 * server, since a Server made by externalServer() may not know it.
 */
export async function dropDatabase(server: Server, name: string): Promise<void> {
  await dropDatabaseNow(server, name);
  pendingDrops.get(dropKey(server, name))?.();
  pendingDrops.delete(dropKey(server, name));
}

async function dropDatabaseNow(server: Server, name: string): Promise<void> {
  await withClient(server.adminUrl, async (c) => {
    const { rows } = await c.query<{ v: string }>("select current_setting('server_version_num') as v");
    const drop = `drop database if exists ${pg.escapeIdentifier(name)}`;
    if (Number(rows[0].v) >= 130000) {
      await c.query(`${drop} with (force)`);
      return;
    }
    for (let attempt = 1; ; attempt++) {
      await c.query(
        "select pg_catalog.pg_terminate_backend(pid) from pg_catalog.pg_stat_activity " +
          "where datname = $1 and pid <> pg_catalog.pg_backend_pid()",
        [name],
      );
      try {
        // DROP DATABASE itself waits up to 5 s for the terminated sessions to exit.
        await c.query(drop);
        return;
      } catch (e) {
        if ((e as { code?: string }).code !== "55006" || attempt >= 5) throw e;
      }
    }
  });
}
