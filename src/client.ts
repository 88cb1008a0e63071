/*
 * The thin typed client: one function per SQL function, typed errors
 * mapped from their SQLSTATEs, and a retry helper for callers that run
 * REPEATABLE READ or SERIALIZABLE. No business logic lives here.
 */

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

const ERRORS: Record<string, new (m: string, c: string, o?: { hint?: string; detail?: string; cause?: unknown }) => RolesyncError> = {
  "22004": NullArgumentError,
  "22023": InvalidArgumentError,
  "22001": InvalidArgumentError,
  RS001: UnknownMemberError,
  RS002: UnknownGroupError,
  RS003: NotAGroupError,
  RS004: SelfMembershipError,
  RS005: UnmanagedGroupError,
  RS006: BlockedMemberError,
  "40001": SerializationError,
  "40P01": SerializationError,
};

/** Turns a pg error with one of this package's SQLSTATEs into its typed error; anything else is returned as is. */
export function toRolesyncError(e: unknown): unknown {
  const err = e as { code?: unknown; message?: string; hint?: string; detail?: string };
  const Cls = typeof err?.code === "string" ? ERRORS[err.code] : undefined;
  return Cls ? new Cls(err.message ?? String(e), err.code as string, { hint: err.hint, detail: err.detail, cause: e }) : e;
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
    throw toRolesyncError(e);
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
    throw toRolesyncError(e);
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
    throw toRolesyncError(e);
  }
}

export interface RetryOptions {
  /** Attempts in all, the first included (default 5). */
  attempts?: number;
  /** Upper bound of the first backoff, doubled each time (default 20 ms). */
  baseDelayMs?: number;
  onRetry?: (error: SerializationError, attempt: number) => void;
}

/**
 * Runs `fn` again when it fails with a serialization failure (40001) or a
 * deadlock (40P01), with jittered exponential backoff. `fn` must run the
 * whole transaction (BEGIN ... COMMIT) on one connection, because a retry
 * needs a fresh snapshot. Other errors are thrown at once.
 */
export async function withRetry<T>(fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 5;
  const base = opts.baseDelayMs ?? 20;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      const err = toRolesyncError(e);
      if (!(err instanceof SerializationError) || attempt >= attempts) throw err;
      opts.onRetry?.(err, attempt);
      await new Promise((r) => setTimeout(r, Math.random() * base * 2 ** (attempt - 1)));
    }
  }
}
