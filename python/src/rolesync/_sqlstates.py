# Generated from src/sqlstates.ts by `npm run docs:sqlstates`: edit that file, not this one.
# test/sqlstates.test.ts fails when the two differ.
"""Every SQLSTATE rolesync raises or documents: the typed error it maps to (None: none), and what to do."""

from typing import Dict, Optional, Tuple

SQLSTATES: Dict[str, Tuple[Optional[str], str]] = {
    "22004": ("NullArgumentError", "fix the input; pass `'{}'` to remove everything"),
    "22023": ("InvalidArgumentError", "pass a flat array of real names; set `rolesync.create_aleph_schema` to `on` or `off`"),
    "RS001": ("UnknownMemberError", "create the member first; do not sync deleted roles"),
    "RS002": ("UnknownGroupError", "create the group roles first, or leave them out"),
    "RS003": ("NotAGroupError", "pass only roles of type `group`"),
    "RS004": ("SelfMembershipError", "remove its id"),
    "RS005": ("UnmanagedGroupError", "pass the right prefix, or NULL / `''` to manage every group"),
    "RS006": ("BlockedMemberError", "an admin unblocks the account; never retry"),
    "22001": ("InvalidArgumentError", "shorten it at the identity provider"),
    "40001": ("SerializationError", "retry the whole transaction (`withTransaction` does)"),
    "40P01": ("SerializationError", "retry the whole transaction (`withTransaction` does)"),
    "42883": (None, "run `rolesync migrate` (`rolesync check` tells which of the two it is)"),
    "25001": (None, "`withTransaction` does not nest: call it outside your transaction; run the script without `-1`"),
    "25P02": (None, "let the error propagate out of `fn`, or use a savepoint for a statement that may fail"),
    "RS010": (None, "drop it; rolesync keys on `(member_id, group_id)`"),
    "RS011": (None, "run `rolesync migrate` again: it drops and rebuilds it"),
    "RS012": (None, "run `aleph upgrade` first, then migrate; for a standalone database without Aleph, `rolesync migrate --create-aleph-schema`"),
    "RS013": (None, "a newer rolesync: run that version (or a later one). An altered ledger: restore its rows from a backup"),
    "RS014": (None, "run `rolesync migrate` to finish adopting (it dedupes and keys the table online), then uninstall"),
    "0A000": (None, "run it on a supported server (`pg_upgrade` an older one first)"),
    "42704": (None, "create it, or name the role your application connects as"),
    "55P03": (None, "`rolesync migrate` retries by itself; if it gives up, end the long transaction holding the table (see `pg_stat_activity`) and run it again"),
    "57014": (None, "end the long transaction (see `pg_stat_activity`), or allow more time: `--statement-timeout` or `ROLESYNC_STATEMENT_TIMEOUT` (0 = none)"),
    "42501": (None, "migrate as the owner of the tables; the application's role gets EXECUTE from `rolesync migrate --app-role`"),
}
