/*
 * The one database harness. `npm test`, the demo, the bench and vitest's
 * global setup all get their server and their databases from here.
 *
 * With DATABASE_URL set, its server is used (databases are created beside the
 * one it names, and dropped afterwards). Without it, a throwaway embedded
 * PostgreSQL 17 is started (scripts/embedded.ts) and stopped after.
 */
import pg from "pg";
import { withClient, redact } from "../src/pg.ts";
import { randomBytes } from "node:crypto";
import { EmbeddedServerError, startEmbedded } from "./embedded.ts";

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

export { withClient, redact } from "../src/pg.ts";

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

export async function startServer(opts: StartOptions = {}): Promise<Server> {
  const log = opts.log ?? (() => {});
  const external = process.env.DATABASE_URL;
  if (external) {
    const major = await serverMajor(external).catch((e: Error) => {
      throw new Error(
        `cannot connect to DATABASE_URL (${redact(external)}): ${e.message}\n` +
          "hint: check the server is running, or unset DATABASE_URL to use an embedded PostgreSQL",
      );
    });
    log(`using PostgreSQL ${major} at ${redact(external)}`);
    return externalServer(external, major);
  }

  const settings = [
    "max_connections=200",
    ...(opts.durable ? [] : ["fsync=off", "full_page_writes=off", "synchronous_commit=off"]),
  ];
  const embedded = await startEmbedded({ settings, log });
  const major = await serverMajor(embedded.url);
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
export async function startServerOrExit(opts: StartOptions & { name: string }): Promise<Server> {
  try {
    return await startServer(opts);
  } catch (e) {
    const known = e instanceof EmbeddedServerError || /^cannot connect to DATABASE_URL/.test((e as Error).message);
    console.error(`${opts.name}: ${known ? (e as Error).message.replace(/\n/g, " ") : ((e as Error).stack ?? e)}`);
    process.exit(1);
  }
}

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
  return server.url(name);
}

export async function dropDatabase(server: Server, name: string): Promise<void> {
  await withClient(server.adminUrl, async (c) => {
    // WITH (FORCE) is PostgreSQL 13+, the oldest version this package supports.
    await c.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
  });
}
