/*
 * The thin typed client: one function per SQL function, typed errors
 * mapped from their SQLSTATEs, and withTransaction, which runs several
 * statements in one transaction and retries it on 40001/40P01. No business
 * logic lives here.
 */
import { SQLSTATES, type RolesyncErrorName } from "./sqlstates.ts";
import { packageVersion } from "./version.ts";

/** Anything with pg's query(): a pg.Client, a pg.PoolClient or a pg.Pool. */
export interface Queryable {
  query<R extends object = Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: R[] }>;
}

export interface SyncResult {
  /** Group ids the member was added to, sorted. */
  added: number[];
  /** Group ids the member was removed from, sorted. */
  removed: number[];
}

/** Base class of every error this package raises from a SQLSTATE. */
export class RolesyncError extends Error {
  readonly code: string;
  readonly hint?: string;
  readonly detail?: string;
  constructor(message: string, code: string, options: { hint?: string; detail?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
    this.detail = options.detail;
  }
}
/** 22004: role_id or group_ids is NULL, or group_ids holds a NULL. */
export class NullArgumentError extends RolesyncError {}
/** 22023 / 22001: a malformed list, an empty or over-long name. */
export class InvalidArgumentError extends RolesyncError {}
/** RS001: the member does not exist or is soft-deleted. */
export class UnknownMemberError extends RolesyncError {}
/** RS002: some groups do not exist or are soft-deleted. */
export class UnknownGroupError extends RolesyncError {}
/** RS003: roles of the wrong type: non-groups in a group list, or (sync_oauth_login) a member that is not a user. */
export class NotAGroupError extends RolesyncError {}
/** RS004: the member is in its own list. */
export class SelfMembershipError extends RolesyncError {}
/** RS005: a group outside the managed prefix. */
export class UnmanagedGroupError extends RolesyncError {}
/** RS006: the member is blocked (role.is_blocked): an admin refused it, only an admin can undo it. */
export class BlockedMemberError extends RolesyncError {}
/** 40001 / 40P01: a concurrent transaction won; retry the whole transaction. */
export class SerializationError extends RolesyncError {}
/**
 * 42883 for one of rolesync's own functions: rolesync is not installed in
 * this database (`rolesync migrate` installs it). The CLI's exit 5.
 */
export class NotInstalledError extends RolesyncError {}
/** 42883 for one of rolesync's own functions where rolesync is installed: it is older than this client. */
export class OutdatedError extends NotInstalledError {}

type RolesyncErrorClass = new (m: string, c: string, o?: { hint?: string; detail?: string; cause?: unknown }) => RolesyncError;
const CLASSES: Record<RolesyncErrorName, RolesyncErrorClass> = {
  NullArgumentError,
  InvalidArgumentError,
  UnknownMemberError,
  UnknownGroupError,
  NotAGroupError,
  SelfMembershipError,
  UnmanagedGroupError,
  BlockedMemberError,
  SerializationError,
};
/** SQLSTATE → typed error, as src/sqlstates.ts maps them. */
const ERRORS: ReadonlyMap<string, RolesyncErrorClass> = new Map(
  SQLSTATES.flatMap((s) => (s.error ? [[s.code, CLASSES[s.error]] as const] : [])),
);

/** Turns a pg error with one of this package's SQLSTATEs into its typed error; anything else is returned as is. */
export function toRolesyncError(e: unknown): unknown {
  if (e instanceof RolesyncError) return e; // already typed: not wrapped again
  const err = e as { code?: unknown; message?: string; hint?: string; detail?: string };
  const Cls = typeof err?.code === "string" ? ERRORS.get(err.code) : undefined;
  return Cls ? new Cls(err.message ?? String(e), err.code as string, { hint: err.hint, detail: err.detail, cause: e }) : e;
}

/**
 * The error a call of rolesync's `fn` failed with, typed. A 42883 naming
 * `fn` means the function is missing: one read then tells whether rolesync
 * is installed at all (NotInstalledError) or older than this client
 * (OutdatedError). That read runs only after the failure, so a call costs
 * one round trip; where it cannot run (the caller's transaction is aborted),
 * the error says both are possible and how to tell.
 */
async function typedError(client: Queryable, e: unknown, fn: string): Promise<unknown> {
  const err = e as { code?: unknown; message?: unknown };
  const name = fn.slice("public.".length, fn.indexOf("("));
  if (err?.code !== "42883" || typeof err.message !== "string" || !err.message.includes(name)) return toRolesyncError(e);
  let installed: boolean | undefined;
  try {
    const { rows } = await client.query<{ installed: boolean }>(
      "select pg_catalog.to_regclass('rolesync.migrations') is not null as installed",
    );
    installed = rows[0]?.installed;
  } catch {
    installed = undefined;
  }
  const version = packageVersion();
  if (installed === true) {
    return new OutdatedError(`rolesync is older than this client (rolesync ${version}): ${fn} is missing`, "42883", {
      hint: `Run \`rolesync migrate\` of rolesync ${version} or later on this database.`,
      cause: e,
    });
  }
  if (installed === false) {
    return new NotInstalledError("rolesync is not installed in this database: run `rolesync migrate`", "42883", {
      hint: `${fn} is missing, and so is rolesync.migrations. Run \`rolesync migrate\` (or rolesync.sql with psql).`,
      cause: e,
    });
  }
  return new NotInstalledError(
    `${fn} is missing: rolesync is not installed in this database, or is older than this client (rolesync ${version})`,
    "42883",
    { hint: "Run `rolesync check` to see which, then `rolesync migrate`.", cause: e },
  );
}

/**
 * Makes member `roleId`'s groups exactly the distinct `groupIds`, atomically
 * and race-free, and returns what changed. Works with a pg Client or Pool.
 * With `managedPrefix`, only groups whose foreign_id starts with it are
 * touched; the default (null) manages every group.
 */
export async function syncRoleMemberships(
  client: Queryable,
  roleId: number,
  groupIds: readonly number[],
  managedPrefix: string | null = null,
): Promise<SyncResult> {
  try {
    const { rows } = await client.query<SyncResult>(
      "select added, removed from public.sync_role_memberships($1::integer, $2::integer[], $3::text)",
      [roleId, groupIds, managedPrefix],
    );
    return { added: rows[0].added, removed: rows[0].removed };
  } catch (e) {
    throw await typedError(client, e, "public.sync_role_memberships(integer, integer[], text)");
  }
}

export interface SyncByForeignIdResult extends SyncResult {
  /** Ids of the groups this call created, sorted. */
  created: number[];
  /** Ids of soft-deleted groups the list named: not resurrected, not joined. */
  skipped: number[];
}

/**
 * Aleph's OAuth group sync in one call: resolves the member by foreign_id,
 * creates missing groups race-free, and syncs the member's groups under
 * `managedPrefix` (default "group:") to exactly those named.
 */
export async function syncRoleMembershipsByForeignId(
  client: Queryable,
  memberForeignId: string,
  groupForeignIds: readonly string[],
  managedPrefix = "group:",
): Promise<SyncByForeignIdResult> {
  try {
    const { rows } = await client.query<SyncByForeignIdResult>(
      "select added, removed, created, skipped from public.sync_role_memberships_by_foreign_id($1::text, $2::text[], $3::text)",
      [memberForeignId, groupForeignIds, managedPrefix],
    );
    return rows[0];
  } catch (e) {
    throw await typedError(client, e, "public.sync_role_memberships_by_foreign_id(text, text[], text)");
  }
}

export interface OAuthLogin {
  /** The user's foreign_id, as Aleph builds it: `<OAUTH_HANDLER>:<sub>`. */
  memberForeignId: string;
  /** The token's name; null or "" falls back to the email, then the foreign id (for a new user). */
  memberName?: string | null;
  /** The token's email; stored when given and different, never cleared by null or "". */
  memberEmail?: string | null;
  /** The token's groups as foreign ids (`group:<name>`), the admin group left out. */
  groupForeignIds: readonly string[];
  /** Only groups under this prefix are synced (default "group:"; "" manages every group). */
  managedPrefix?: string;
}

export interface OAuthLoginResult extends SyncByForeignIdResult {
  /** The user's role id. */
  memberId: number;
  /** True when this call created the user: its first login. */
  memberCreated: boolean;
}

/**
 * Aleph's OAuth login in one call: creates the user race-free (or stores its
 * changed email), refuses a blocked (BlockedMemberError) or soft-deleted
 * (UnknownMemberError) one, then syncs its groups by foreign id. Nothing is
 * written when nothing changed. The admin rules stay with the caller.
 */
export async function syncOAuthLogin(
  client: Queryable,
  { memberForeignId, memberName = null, memberEmail = null, groupForeignIds, managedPrefix = "group:" }: OAuthLogin,
): Promise<OAuthLoginResult> {
  try {
    const { rows } = await client.query<{
      member_id: number;
      member_created: boolean;
      added: number[];
      removed: number[];
      created: number[];
      skipped: number[];
    }>(
      "select member_id, member_created, added, removed, created, skipped " +
        "from public.sync_oauth_login($1::text, $2::text, $3::text, $4::text[], $5::text)",
      [memberForeignId, memberName, memberEmail, groupForeignIds, managedPrefix],
    );
    const r = rows[0];
    return {
      memberId: r.member_id,
      memberCreated: r.member_created,
      added: r.added,
      removed: r.removed,
      created: r.created,
      skipped: r.skipped,
    };
  } catch (e) {
    throw await typedError(client, e, "public.sync_oauth_login(text, text, text, text[], text)");
  }
}

export interface RetryOptions {
  /** Attempts in all, the first included (default 5). */
  attempts?: number;
  /** Upper bound of the first backoff, doubled each time (default 20 ms). */
  baseDelayMs?: number;
  /** Called before each retry, with the error and the number of the attempt that failed (1, 2, ...). */
  onRetry?: (error: SerializationError, attempt: number) => void;
}

function retrySettings(opts: RetryOptions): { attempts: number; baseDelayMs: number } {
  const attempts = opts.attempts ?? 5;
  const baseDelayMs = opts.baseDelayMs ?? 20;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new RangeError(`attempts must be an integer of at least 1, not ${String(attempts)}`);
  }
  if (typeof baseDelayMs !== "number" || !(baseDelayMs >= 0)) {
    throw new RangeError(`baseDelayMs must be a number of at least 0, not ${String(baseDelayMs)}`);
  }
  return { attempts, baseDelayMs };
}

/**
 * The low-level retry loop under withTransaction; prefer withTransaction.
 * Runs `fn` again when it fails with a serialization failure (40001) or a
 * deadlock (40P01), with jittered exponential backoff; any other error is
 * thrown at once, typed by toRolesyncError. `fn` must run the whole
 * transaction on one connection (BEGIN ... COMMIT), because a retry needs a
 * fresh snapshot, and it must end that transaction on every path: on an error
 * it must ROLLBACK before it throws, or the retry runs inside the aborted
 * transaction and fails with 25P02.
 */
export async function withRetry<T>(fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const { attempts, baseDelayMs } = retrySettings(opts);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      const err = toRolesyncError(e);
      if (!(err instanceof SerializationError) || attempt >= attempts) throw err;
      opts.onRetry?.(err, attempt);
      await new Promise((r) => setTimeout(r, Math.random() * baseDelayMs * 2 ** (attempt - 1)));
    }
  }
}

/** The isolation levels withTransaction takes (PostgreSQL runs READ UNCOMMITTED as READ COMMITTED). */
export type IsolationLevel = "read committed" | "repeatable read" | "serializable";
const ISOLATION_LEVELS: readonly string[] = ["read committed", "repeatable read", "serializable"];

export interface TransactionOptions extends RetryOptions {
  /**
   * The transaction's isolation level, in either letter case (default "read
   * committed", PostgreSQL's default and Aleph's). At "repeatable read" and
   * "serializable" a sync whose snapshot predates another sync of the same
   * member fails with 40001, and withTransaction retries the transaction.
   */
  isolationLevel?: IsolationLevel | Uppercase<IsolationLevel>;
}

/** A connection to run a transaction on: a pg.Client, or a pg.PoolClient the caller checked out. */
export type TransactionClient = Queryable;

/** pg's clients are EventEmitters: withTransaction listens for "error" and "notice" while it uses one. */
interface Emitter {
  on?(event: string, listener: (arg: never) => void): unknown;
  removeListener?(event: string, listener: (arg: never) => void): unknown;
}

/** A client checked out of a pool: given back with release(), or release(err) to have the pool discard it. */
export interface PooledClient extends TransactionClient {
  release(err?: Error | boolean): void;
}

/** A pg.Pool, as withTransaction uses it (told apart from a client by its totalCount). */
export interface ClientPool<C extends PooledClient = PooledClient> {
  connect(): Promise<C>;
  readonly totalCount: number;
}

function isPool(db: ClientPool | TransactionClient): db is ClientPool {
  return (
    typeof (db as Partial<PooledClient>).release !== "function" &&
    typeof (db as Partial<ClientPool>).connect === "function" &&
    "totalCount" in db
  );
}

function beginStatement(level: unknown): string {
  const normalized = typeof level === "string" ? level.trim().toLowerCase().replace(/\s+/g, " ") : level;
  if (typeof normalized !== "string" || !ISOLATION_LEVELS.includes(normalized)) {
    throw new RangeError(
      `isolationLevel must be one of ${ISOLATION_LEVELS.map((l) => `"${l}"`).join(", ")}, not ${JSON.stringify(level) ?? String(level)}`,
    );
  }
  return `begin isolation level ${normalized}`;
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

function stateError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * Runs `fn` in one transaction and retries the whole transaction when
 * PostgreSQL reports a serialization failure (40001) or a deadlock (40P01).
 *
 * With a pg.Pool, each attempt checks out a client, runs
 * `BEGIN ISOLATION LEVEL <isolationLevel>`, calls `fn(client)`, and COMMITs;
 * on any error it ROLLBACKs, and the client always goes back to the pool
 * (with release(err), so the pool discards it, when its connection broke).
 * With a pg.Client (or a PoolClient you checked out), the same runs on that
 * connection, which is left open and is not released.
 *
 * `fn` may run any statements on `client`, but must not COMMIT or ROLLBACK
 * itself, and must not keep using `client` after it returns. It runs again on
 * a retry, so it should do nothing outside the database that cannot be
 * repeated. 40001 and 40P01 are retried with jittered exponential backoff up
 * to `attempts` (default 5), after which the SerializationError is thrown;
 * any other error is thrown at once, typed by toRolesyncError.
 *
 * The connection must not already be in a transaction: withTransaction does
 * not nest, and refuses (25001) rather than commit the caller's transaction.
 * If `fn` swallows a failed statement, COMMIT cannot commit the aborted
 * transaction, and withTransaction throws (25P02) instead of returning.
 */
export function withTransaction<T, C extends PooledClient = PooledClient>(
  pool: ClientPool<C>,
  fn: (client: C) => Promise<T>,
  options?: TransactionOptions,
): Promise<T>;
export function withTransaction<T, C extends TransactionClient>(
  client: C,
  fn: (client: C) => Promise<T>,
  options?: TransactionOptions,
): Promise<T>;
export async function withTransaction<T>(
  db: ClientPool | TransactionClient,
  fn: (client: never) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const begin = beginStatement(options.isolationLevel ?? "read committed");
  retrySettings(options); // a bad option fails here, before a connection is taken
  const pooled = isPool(db);
  return withRetry(() => transactionOnce(db, pooled, begin, fn), options);
}

async function transactionOnce<T>(
  db: ClientPool | TransactionClient,
  pooled: boolean,
  begin: string,
  fn: (client: never) => Promise<T>,
): Promise<T> {
  const client: TransactionClient = pooled ? await (db as ClientPool).connect() : (db as TransactionClient);
  // Set when the connection is unusable or in an unknown state: a pool then discards the client.
  let broken: Error | undefined;
  // pg emits "error" on a client whose connection dies; with no listener that
  // would end the process, so keep it while the client is ours.
  const onError = (e: Error) => {
    broken ??= e;
  };
  // BEGIN inside a transaction is only a warning (25001).
  let alreadyInTransaction = false;
  const onNotice = (n: { code?: string }) => {
    if (n?.code === "25001") alreadyInTransaction = true;
  };
  const events = client as Emitter;
  events.on?.("error", onError);
  events.on?.("notice", onNotice);
  let began = false;
  try {
    try {
      await client.query(begin);
    } catch (e) {
      // A failed BEGIN leaves the connection in a state we do not know: a pool should not hand it out again.
      broken ??= asError(e);
      throw e;
    }
    if (alreadyInTransaction) {
      const err = stateError(
        "withTransaction: the connection is already in a transaction; withTransaction runs its own and does not nest, so it left that transaction alone",
        "25001",
      );
      broken ??= err; // a pooled connection left inside a transaction: the pool should not hand it out again
      throw err;
    }
    began = true;
    const result = await fn(client as never);
    const commit = (await client.query("commit")) as { command?: string };
    if (commit.command === "ROLLBACK") {
      throw stateError(
        "withTransaction: COMMIT rolled the transaction back, because a statement in it failed and fn went on without rethrowing; nothing was committed",
        "25P02",
      );
    }
    return result;
  } catch (e) {
    if (began) {
      try {
        await client.query("rollback");
      } catch (rollbackError) {
        broken ??= asError(rollbackError);
      }
    }
    throw e;
  } finally {
    events.removeListener?.("error", onError);
    events.removeListener?.("notice", onNotice);
    if (pooled) (client as PooledClient).release(broken);
  }
}
