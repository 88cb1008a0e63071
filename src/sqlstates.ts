/*
 * Every SQLSTATE rolesync raises or documents, in one place (issue #12).
 *
 * - docs/errors.md's table is rendered from it (`npm run docs:sqlstates`
 *   rewrites the part between <!-- sqlstates:begin --> and
 *   <!-- sqlstates:end -->), and so is the Python client.s table;
 *   test/sqlstates.test.ts fails when they differ.
 * - The typed client (src/client.ts) maps a code to the error class `error`
 *   names; the CLI (src/cli.ts, hintFor) shows `cliHint`, else `todo`, when
 *   the server's error carries no HINT of its own. rolesync's SQL sets a HINT
 *   on every RS error, so for those the server's wins.
 * - The SQL cannot import it (released migrations are immutable), so the test
 *   checks the other way round: every RSnnn code that migrations/ or src/
 *   raise or name is here, and every RS code here is raised somewhere.
 *
 * `from`, `when` and `todo` are markdown (docs/errors.md's columns); `cliHint` is
 * plain text for a terminal.
 */

/** The typed errors of src/client.ts that a SQLSTATE can map to. */
export type RolesyncErrorName =
  | "NullArgumentError"
  | "InvalidArgumentError"
  | "UnknownMemberError"
  | "UnknownGroupError"
  | "NotAGroupError"
  | "SelfMembershipError"
  | "UnmanagedGroupError"
  | "BlockedMemberError"
  | "SerializationError";

export interface Sqlstate {
  /** The SQLSTATE: five characters, RSnnn for rolesync's own. */
  readonly code: string;
  /** Where it comes from: the functions or commands that raise it (markdown). */
  readonly from: string;
  /** What it means: when it is raised (markdown). */
  readonly when: string;
  /** What to do about it (markdown). */
  readonly todo: string;
  /** The client's typed error for it (toRolesyncError); none: the error is passed through as is. */
  readonly error?: RolesyncErrorName;
  /** The CLI's hint when the server sent none and `todo` is not the operator's remedy (plain text). */
  readonly cliHint?: string;
}

const SYNC = "`sync_role_memberships`, `sync_role_memberships_by_foreign_id`, `sync_oauth_login`, `sync_aleph_login`";
const MIGRATION = "migration: `rolesync migrate`, `runMigrations`, `rolesync sql`'s script";

export const SQLSTATES: readonly Sqlstate[] = Object.freeze(
  (
    [
      {
        code: "22004",
        from: SYNC,
        when: "an argument is NULL, or an element of the list (the message gives its position); the logins: the member foreign id",
        todo: "fix the input; pass `'{}'` to remove everything",
        error: "NullArgumentError",
      },
      {
        code: "22023",
        from: `${SYNC}; migration`,
        when:
          "a multi-dimensional list; by foreign id: an empty name, or one that is only the prefix; the logins: an empty member foreign id; `sync_aleph_login`: a rule that is none of its values; " +
          "migration: `rolesync.create_aleph_schema` is neither on nor off",
        todo: "pass a flat array of real names; set `rolesync.create_aleph_schema` to `on` or `off`",
        error: "InvalidArgumentError",
      },
      {
        code: "RS001",
        from: SYNC,
        when: "the member does not exist or is soft-deleted (`deleted_at` set); the logins create an absent member, so there only soft-deleted",
        todo: "create the member first; do not sync deleted roles",
        error: "UnknownMemberError",
      },
      {
        code: "RS002",
        from: "`sync_role_memberships` (which the other two call)",
        when: 'groups that do not exist or are soft-deleted (the first 20 are named, then "and N more", as in every error that lists items)',
        todo: "create the group roles first, or leave them out",
        error: "UnknownGroupError",
      },
      {
        code: "RS003",
        from: SYNC,
        when: "roles that are not groups, named with their type (by foreign id: a name that belongs to a user); the logins: a member that is not a user",
        todo: "pass only roles of type `group`",
        error: "NotAGroupError",
      },
      {
        code: "RS004",
        from: "`sync_role_memberships`, `sync_role_memberships_by_foreign_id`, `sync_aleph_login`",
        when: "the member is in its own list",
        todo: "remove its id",
        error: "SelfMembershipError",
      },
      {
        code: "RS005",
        from: "`sync_role_memberships`, `sync_role_memberships_by_foreign_id`, `sync_aleph_login`",
        when: "a group outside `managed_prefix` (by id, or a name not starting with the prefix)",
        todo: "pass the right prefix, or NULL / `''` to manage every group",
        error: "UnmanagedGroupError",
      },
      {
        code: "RS006",
        from: "`sync_oauth_login`, `sync_aleph_login`",
        when: "the member is blocked (`is_blocked`)",
        todo: "an admin unblocks the account; never retry",
        error: "BlockedMemberError",
      },
      {
        code: "22001",
        from: "`sync_role_memberships_by_foreign_id`, `sync_oauth_login`, `sync_aleph_login`",
        when: "a name (or the logins' member foreign id) longer than `role.foreign_id` allows (2048 in Aleph)",
        todo: "shorten it at the identity provider",
        error: "InvalidArgumentError",
      },
      {
        code: "40001",
        from: SYNC,
        when: "REPEATABLE READ / SERIALIZABLE only: another call changed this member after your snapshot (`sync_oauth_login`: created it)",
        todo: "retry the whole transaction (`withTransaction` does)",
        error: "SerializationError",
      },
      {
        code: "40P01",
        from: "PostgreSQL, in your transaction",
        when: "a deadlock: your transaction takes several locks in varying orders (see the retry advice below)",
        todo: "retry the whole transaction (`withTransaction` does)",
        error: "SerializationError",
      },
      {
        code: "42883",
        from: "the TypeScript and Python clients; the CLI (exit 5)",
        when: "one of rolesync's functions is missing: rolesync is not installed in this database, or is older than the client (the clients raise `NotInstalledError`, or `OutdatedError` when rolesync is installed)",
        todo: "run `rolesync migrate` (`rolesync check` tells which of the two it is)",
      },
      {
        code: "25001",
        from: "`withTransaction`; `rolesync sql`'s script",
        when: "`withTransaction`: the connection is already in a transaction; the script: run with `psql -1` (`--single-transaction`)",
        todo: "`withTransaction` does not nest: call it outside your transaction; run the script without `-1`",
      },
      {
        code: "25P02",
        from: "`withTransaction`",
        when: "a statement in the transaction failed and `fn` went on without rethrowing: COMMIT rolled back, nothing was committed",
        todo: "let the error propagate out of `fn`, or use a savepoint for a statement that may fail",
      },
      {
        code: "RS010",
        from: MIGRATION,
        when: "`role_membership` already has a primary key on other columns",
        todo: "drop it; rolesync keys on `(member_id, group_id)`",
      },
      {
        code: "RS011",
        from: MIGRATION,
        when: "an index on `role_membership` (`role_membership_pkey`, `rolesync_role_membership_key`) is INVALID when the key is attached",
        todo: "run `rolesync migrate` again: it drops and rebuilds it",
      },
      {
        code: "RS012",
        from: MIGRATION,
        when: "Aleph's tables (`role`, `role_membership`) are missing, so nothing was migrated; or, with `--create-aleph-schema`, only some of `role_type`, `role`, `role_membership` exist",
        todo: "run `aleph upgrade` first, then migrate; for a standalone database without Aleph, `rolesync migrate --create-aleph-schema`",
      },
      {
        code: "RS013",
        from: MIGRATION,
        when: "`rolesync.migrations` is not a beginning of this version's migrations: a newer rolesync migrated the database, or a row was edited or deleted (`rolesync uninstall`: a newer rolesync's ledger); nothing was changed",
        todo: "a newer rolesync: run that version (or a later one). An altered ledger: restore its rows from a backup",
      },
      {
        code: "RS014",
        from: "`rolesync uninstall`, `rolesync sql --uninstall`'s script",
        when: "`role_membership` has no key (an install interrupted before its key): uninstalling would leave it without one, and the duplicate-row bug would return; nothing was changed",
        todo: "run `rolesync migrate` to finish adopting (it dedupes and keys the table online), then uninstall",
      },
      {
        code: "0A000",
        from: `${MIGRATION}; \`rolesync uninstall\``,
        when: "the server's major is not one rolesync supports (10 to 18); nothing was changed",
        todo: "run it on a supported server (`pg_upgrade` an older one first)",
      },
      {
        code: "42704",
        from: `${MIGRATION}`,
        when: "the application role (`--app-role`, `ROLESYNC_APP_ROLE`, the script's `-v app_role`) does not exist; nothing was changed",
        todo: "create it, or name the role your application connects as",
      },
      {
        code: "55P03",
        from: `${MIGRATION}; PostgreSQL's \`lock_timeout\` anywhere`,
        when: "a lock was not granted within `lock_timeout` (1 s in the migrations); `rolesync sql`'s script: another migration is running",
        todo: "`rolesync migrate` retries by itself; if it gives up, end the long transaction holding the table (see `pg_stat_activity`) and run it again",
      },
      {
        code: "57014",
        from: "PostgreSQL's `statement_timeout`: the CLI's `status`, `check`, `dedupe --dry-run`",
        when: "a statement ran past `--statement-timeout` (default 60 s), usually waiting for a lock a long transaction holds; or an administrator cancelled it",
        todo: "end the long transaction (see `pg_stat_activity`), or allow more time: `--statement-timeout` or `ROLESYNC_STATEMENT_TIMEOUT` (0 = none)",
        cliHint:
          "A statement ran past the statement timeout (status, check, dedupe --dry-run: --statement-timeout or " +
          "ROLESYNC_STATEMENT_TIMEOUT, default 60 s, 0 = none), usually waiting for a lock a long transaction holds (see pg_stat_activity); or an administrator cancelled it.",
      },
      {
        code: "42501",
        from: "PostgreSQL, to any command",
        when: "the connecting role lacks a privilege: migrating as a role that does not own Aleph's tables, or calling a function without EXECUTE",
        todo: "migrate as the owner of the tables; the application's role gets EXECUTE from `rolesync migrate --app-role`",
      },
    ] satisfies Sqlstate[]
  ).map((s) => Object.freeze(s)),
);

const BY_CODE: ReadonlyMap<string, Sqlstate> = new Map(SQLSTATES.map((s) => [s.code, s]));

/** The entry for `code`, or undefined when rolesync neither raises nor documents it. */
export function sqlstate(code: string): Sqlstate | undefined {
  return BY_CODE.get(code);
}
