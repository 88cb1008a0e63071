// The pg helpers everything shares: a client for one piece of work, a printable URL, and a URL check.
import pg from "pg";

export interface ClientOptions {
  /**
   * Give up connecting after this many milliseconds (pg's
   * connectionTimeoutMillis); 0 or absent: wait as long as the OS does, which
   * is forever for a server that accepts the TCP connection and never answers.
   */
  connectTimeoutMs?: number;
  /** The session's statement_timeout, in milliseconds; 0 or absent: the server's own setting. */
  statementTimeoutMs?: number;
}

/** No PostgreSQL answer within the connect timeout. `code` is the OS's, so callers treat it as unreachable. */
export class ConnectTimeoutError extends Error {
  readonly code = "ETIMEDOUT";
  constructor(
    readonly where: string,
    readonly timeoutMs: number,
  ) {
    super(`no answer from ${where} within ${timeoutMs / 1000} s (connect timeout)`);
    this.name = "ConnectTimeoutError";
  }
}

export async function withClient<T>(
  url: string,
  fn: (client: pg.Client) => Promise<T>,
  opts: ClientOptions = {},
): Promise<T> {
  const client = new pg.Client({
    connectionString: url,
    ...(opts.connectTimeoutMs ? { connectionTimeoutMillis: opts.connectTimeoutMs } : {}),
    ...(opts.statementTimeoutMs ? { statement_timeout: opts.statementTimeoutMs } : {}),
  });
  const started = Date.now();
  try {
    await client.connect();
  } catch (e) {
    // pg ends a connection attempt past connectionTimeoutMillis with a bare "timeout expired" (no code).
    const err = e as { code?: string; message?: string };
    if (opts.connectTimeoutMs && !err.code && /timeout/i.test(err.message ?? "") && Date.now() - started >= opts.connectTimeoutMs - 50) {
      throw new ConnectTimeoutError(serverOf(url), opts.connectTimeoutMs);
    }
    throw e;
  }
  // The server may end the connection while it is idle between statements (a
  // restart, pg_terminate_backend): pg reports that as an 'error' event, which
  // with no listener ends the process with a stack. Kept, it is what the next
  // statement fails with, SQLSTATE and all.
  let lost: Error | undefined;
  client.on("error", (e) => (lost ??= e));
  try {
    return await fn(client);
  } catch (e) {
    throw lost ?? e;
  } finally {
    await client.end().catch((e) => {
      if (!lost) throw e;
    });
  }
}

/** host:port (or the socket directory) of a connection URL, for messages; never the user or password. */
function serverOf(url: string): string {
  try {
    const u = new URL(url);
    const host = u.searchParams.get("host") || u.hostname || "localhost";
    return `${decodeURIComponent(host)}:${u.searchParams.get("port") || u.port || "5432"}`;
  } catch {
    return "the server";
  }
}

/** Hides the password in a connection string before it is printed. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable connection string)";
  }
}

/**
 * What is wrong with a database URL, in words, or null when it is one pg can
 * use: postgres:// or postgresql://, parseable, naming a host (or, for a
 * Unix socket, its directory in ?host=). Without this check pg reads
 * "not-a-url" as a path relative to a placeholder URL and fails with
 * `getaddrinfo ENOTFOUND base`. The answer never quotes the URL, whose
 * password may be in it.
 */
export function databaseUrlProblem(url: string): string | null {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1];
  if (!scheme) return "it is not a URL (no scheme)";
  if (!/^postgres(ql)?$/i.test(scheme)) return `its scheme is ${scheme.toLowerCase()}:, not postgres: or postgresql:`;
  if (!/^[a-z]+:\/\//i.test(url)) return `${scheme.toLowerCase()}: must be followed by //`;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    if (/@\//.test(url)) {
      return "it has a user but no host; for a Unix socket put the user in ?user= (postgres:///dbname?host=/var/run/postgresql&user=me)";
    }
    return "it cannot be parsed (check the port, and percent-encode reserved characters in the user name and password)";
  }
  if (!u.hostname && !u.searchParams.get("host")) {
    return "it names no host (for a Unix socket, give its directory: postgres:///dbname?host=/var/run/postgresql)";
  }
  try {
    decodeURIComponent(u.username);
    decodeURIComponent(u.password);
    decodeURIComponent(u.hostname);
    decodeURI(u.pathname);
  } catch {
    return "its user name, password, host or database name holds a malformed %-escape";
  }
  return null;
}
