"""The Python client: rolesync's SQL functions, each one call, on the connection you already have.

Every function takes a DB-API connection (psycopg2 or psycopg 3) or a SQLAlchemy Connection or
Session (Flask-SQLAlchemy's `db.session` included), runs ONE statement in the caller's
transaction (it never commits), and returns a typed result. All logic lives in PostgreSQL;
this module passes arguments, reads results and types errors:

- a SQLSTATE rolesync raises becomes the error class src/sqlstates.ts names (errors.py);
- before the first call of a function on a connection, one read checks that the function
  exists, so that a database without it raises NotInstalledError ("run `rolesync migrate`")
  or OutdatedError (rolesync is installed, but older than this client), and not the raw 42883;
- run_in_transaction() retries a whole transaction on 40001 and 40P01.
"""

from __future__ import annotations

import random
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

from ._version import __version__
from .errors import (
    NotInstalledError,
    OutdatedError,
    RolesyncError,
    SerializationError,
    driver_error_parts,
    to_rolesync_error,
)

T = TypeVar("T")


@dataclass(frozen=True)
class SyncResult:
    """What sync_role_memberships changed: group ids, sorted."""

    added: List[int]
    removed: List[int]


@dataclass(frozen=True)
class SyncByForeignIdResult:
    """What sync_role_memberships_by_foreign_id changed: group ids, sorted."""

    added: List[int]
    removed: List[int]
    created: List[int]
    skipped: List[int]


@dataclass(frozen=True)
class OAuthLoginResult:
    """What sync_oauth_login did: the member, whether it was created, and its groups' changes (ids)."""

    member_id: int
    member_created: bool
    added: List[int]
    removed: List[int]
    created: List[int]
    skipped: List[int]


@dataclass(frozen=True)
class AlephLoginResult:
    """What sync_aleph_login did: the user, whether it was created, its is_admin, and its groups' changes (foreign ids)."""

    member_id: int
    member_created: bool
    is_admin: bool
    added: List[str]
    removed: List[str]
    created: List[str]
    skipped: List[str]


@dataclass(frozen=True)
class _Function:
    signature: str
    columns: str
    arguments: Tuple[Tuple[str, str], ...]  # (name, SQL type)

    def sql(self, style: str) -> str:
        """The call with named parameters: ':name' for SQLAlchemy, '%(name)s' for DB-API drivers."""
        name = self.signature.split("(")[0]
        args = ", ".join(
            f"{n} => cast({':' + n if style == 'named' else '%(' + n + ')s'} as {t})" for n, t in self.arguments
        )
        return f"select {self.columns} from {name}({args})"


_SYNC = _Function(
    "public.sync_role_memberships(integer, integer[], text)",
    "added, removed",
    (("role_id", "integer"), ("group_ids", "integer[]"), ("managed_prefix", "text")),
)
_BY_FOREIGN_ID = _Function(
    "public.sync_role_memberships_by_foreign_id(text, text[], text)",
    "added, removed, created, skipped",
    (("member_foreign_id", "text"), ("group_foreign_ids", "text[]"), ("managed_prefix", "text")),
)
_OAUTH_LOGIN = _Function(
    "public.sync_oauth_login(text, text, text, text[], text)",
    "member_id, member_created, added, removed, created, skipped",
    (
        ("member_foreign_id", "text"),
        ("member_name", "text"),
        ("member_email", "text"),
        ("group_foreign_ids", "text[]"),
        ("managed_prefix", "text"),
    ),
)
_ALEPH_LOGIN = _Function(
    "public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text)",
    "member_id, member_created, is_admin, added, removed, created, skipped",
    (
        ("member_foreign_id", "text"),
        ("member_name", "text"),
        ("member_email", "text"),
        ("group_foreign_ids", "text[]"),
        ("admin_group", "boolean"),
        ("auto_admin", "boolean"),
        ("migrate_sub", "boolean"),
        ("email_rule", "text"),
        ("update_name", "boolean"),
        ("admin_rule", "text"),
        ("touch", "text"),
        ("api_keys", "text[]"),
        ("managed_prefix", "text"),
    ),
)

_PROBE = (
    "select pg_catalog.to_regprocedure({sig}) is not null as found, "
    "pg_catalog.to_regclass('rolesync.migrations') is not null as installed"
)


def _sqlalchemy_kind(conn: Any) -> Optional[str]:
    """'session' or 'connection' for a SQLAlchemy object (without importing SQLAlchemy otherwise); None for DB-API."""
    module = type(conn).__module__
    if not (module.startswith("sqlalchemy") or module.startswith("flask_sqlalchemy")):
        return None
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    if isinstance(conn, (Session, scoped_session)):
        return "session"
    if isinstance(conn, Connection):
        return "connection"
    raise TypeError(f"rolesync takes a DB-API connection or a SQLAlchemy Connection or Session, not {type(conn).__name__}")


def _dbapi_connection(conn: Any) -> Any:
    """The driver's connection under whatever was passed: the key of the per-connection probe cache."""
    kind = _sqlalchemy_kind(conn)
    if kind == "session":
        conn = conn.connection()
        kind = "connection"
    if kind == "connection":
        return conn.connection.dbapi_connection
    return conn


def _execute(conn: Any, sql_named: str, sql_pyformat: str, params: Dict[str, Any]) -> Tuple[Any, ...]:
    """One statement, one row, in the caller's transaction."""
    if _sqlalchemy_kind(conn) is not None:
        from sqlalchemy import text

        return tuple(conn.execute(text(sql_named), params).one())
    cur = conn.cursor()
    try:
        cur.execute(sql_pyformat, params)
        row = cur.fetchone()
    finally:
        cur.close()
    if row is None:
        raise RuntimeError("rolesync: the call returned no row")
    return tuple(row)


# Which functions were found on which driver connection. Weak: a closed connection drops out.
_found: "weakref.WeakKeyDictionary[Any, Set[str]]" = weakref.WeakKeyDictionary()


def _ensure_function(conn: Any, fn: _Function) -> None:
    """Before a connection's first call of `fn`: one read, so that a missing function is a clear error."""
    key = _dbapi_connection(conn)
    try:
        seen = _found.setdefault(key, set())
    except TypeError:  # a driver connection without weak references: probe every time
        seen = set()
    if fn.signature in seen:
        return
    found, installed = _execute(
        conn, _PROBE.format(sig=":sig"), _PROBE.format(sig="%(sig)s"), {"sig": fn.signature}
    )
    if found:
        seen.add(fn.signature)
        return
    raise _missing(fn, bool(installed))


def _missing(fn: _Function, installed: Optional[bool]) -> NotInstalledError:
    if installed:
        return OutdatedError(
            f"this rolesync is older than the client (rolesync {__version__}): {fn.signature} is missing",
            "42883",
            f"Run `rolesync migrate` (or rolesync.sql with psql) of rolesync {__version__} or later on this database.",
        )
    if installed is None:
        return NotInstalledError(
            f"{fn.signature} is missing: rolesync is not installed here, or is older than the client (rolesync {__version__})",
            "42883",
            "Run `rolesync check` to see which, then `rolesync migrate`.",
        )
    return NotInstalledError(
        "rolesync is not installed in this database: run `rolesync migrate`",
        "42883",
        f"{fn.signature} is missing, and so is rolesync.migrations. Run `rolesync migrate` (or rolesync.sql with psql).",
    )


def _call(conn: Any, fn: _Function, params: Dict[str, Any]) -> Tuple[Any, ...]:
    _ensure_function(conn, fn)
    try:
        return _execute(conn, fn.sql("named"), fn.sql("pyformat"), params)
    except Exception as exc:
        parts = driver_error_parts(exc)
        if parts is not None and parts["sqlstate"] == "42883" and fn.signature.split("(")[0].split(".")[1] in (parts["message"] or ""):
            # Found before, gone now (dropped, or uninstalled): say so; the next call probes again.
            seen = _found.get(_dbapi_connection_or_none(conn))
            if seen is not None:
                seen.discard(fn.signature)
            raise _missing(fn, None) from exc
        typed = to_rolesync_error(exc)
        if typed is exc:
            raise
        raise typed from exc


def _dbapi_connection_or_none(conn: Any) -> Any:
    try:
        return _dbapi_connection(conn)
    except Exception:  # the transaction is aborted; the connection may not be reachable
        return None


def _ints(values: Optional[Sequence[Any]]) -> List[int]:
    return [int(v) for v in (values or [])]


def _strs(values: Optional[Sequence[Any]]) -> List[str]:
    return [str(v) for v in (values or [])]


def sync_role_memberships(
    conn: Any, role_id: int, group_ids: Sequence[int], managed_prefix: Optional[str] = None
) -> SyncResult:
    """Makes role `role_id`'s groups (those under managed_prefix; None: every group) exactly `group_ids`."""
    added, removed = _call(
        conn, _SYNC, {"role_id": role_id, "group_ids": list(group_ids), "managed_prefix": managed_prefix}
    )
    return SyncResult(_ints(added), _ints(removed))


def sync_role_memberships_by_foreign_id(
    conn: Any, member_foreign_id: str, group_foreign_ids: Sequence[str], managed_prefix: str = "group:"
) -> SyncByForeignIdResult:
    """Syncs a member's groups by foreign id, creating missing groups race-free."""
    row = _call(
        conn,
        _BY_FOREIGN_ID,
        {
            "member_foreign_id": member_foreign_id,
            "group_foreign_ids": list(group_foreign_ids),
            "managed_prefix": managed_prefix,
        },
    )
    return SyncByForeignIdResult(*(_ints(v) for v in row))


def sync_oauth_login(
    conn: Any,
    member_foreign_id: str,
    member_name: Optional[str],
    member_email: Optional[str],
    group_foreign_ids: Sequence[str],
    managed_prefix: str = "group:",
) -> OAuthLoginResult:
    """A login in one call: creates the user race-free or stores its changed email, then syncs its groups."""
    member_id, member_created, added, removed, created, skipped = _call(
        conn,
        _OAUTH_LOGIN,
        {
            "member_foreign_id": member_foreign_id,
            "member_name": member_name,
            "member_email": member_email,
            "group_foreign_ids": list(group_foreign_ids),
            "managed_prefix": managed_prefix,
        },
    )
    return OAuthLoginResult(
        int(member_id), bool(member_created), _ints(added), _ints(removed), _ints(created), _ints(skipped)
    )


def sync_aleph_login(
    conn: Any,
    member_foreign_id: str,
    member_name: Optional[str],
    member_email: Optional[str],
    group_foreign_ids: Sequence[str],
    *,
    admin_group: bool = False,
    auto_admin: bool = False,
    migrate_sub: bool = False,
    email_rule: str = "on_create",
    update_name: bool = False,
    admin_rule: str = "grant",
    touch: str = "always",
    api_keys: Optional[Sequence[Optional[str]]] = None,
    managed_prefix: Optional[str] = None,
) -> AlephLoginResult:
    """Aleph's OAuth login (4.1 or OpenAleph 5) in one call, lock first; the line's rules as arguments.

    See migration 000017 for each argument. A blocked user raises BlockedMemberError, a
    soft-deleted one UnknownMemberError, one that is not a user NotAGroupError; nothing is
    changed then.
    """
    row = _call(
        conn,
        _ALEPH_LOGIN,
        {
            "member_foreign_id": member_foreign_id,
            "member_name": member_name,
            "member_email": member_email,
            "group_foreign_ids": list(group_foreign_ids),
            "admin_group": admin_group,
            "auto_admin": auto_admin,
            "migrate_sub": migrate_sub,
            "email_rule": email_rule,
            "update_name": update_name,
            "admin_rule": admin_rule,
            "touch": touch,
            "api_keys": None if api_keys is None else list(api_keys),
            "managed_prefix": managed_prefix,
        },
    )
    member_id, member_created, is_admin, added, removed, created, skipped = row
    return AlephLoginResult(
        int(member_id), bool(member_created), bool(is_admin), _strs(added), _strs(removed), _strs(created), _strs(skipped)
    )


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, SerializationError):
        return True
    parts = driver_error_parts(exc)
    return parts is not None and parts["sqlstate"] in ("40001", "40P01")


def run_in_transaction(
    bind: Any,
    fn: Callable[[Any], T],
    *,
    attempts: int = 5,
    base_delay: float = 0.02,
    on_retry: Optional[Callable[[int, BaseException], None]] = None,
) -> T:
    """Runs fn(bind) and commits; on 40001 or 40P01 rolls back and runs it again, with jittered backoff.

    `bind` is a DB-API connection or a SQLAlchemy Session or Connection, whose transaction this
    helper owns: it must hold nothing uncommitted when called, since a retry rolls back. Other
    errors roll back and propagate; the last retryable one propagates after `attempts` tries.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            result = fn(bind)
            bind.commit()
            return result
        except Exception as exc:
            try:
                bind.rollback()
            except Exception:  # the connection broke: the original error says more
                pass
            if attempt == attempts or not _retryable(exc):
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            time.sleep(base_delay * (2 ** (attempt - 1)) * (0.5 + random.random()))
    raise AssertionError("unreachable")


__all__ = [
    "AlephLoginResult",
    "OAuthLoginResult",
    "RolesyncError",
    "SyncByForeignIdResult",
    "SyncResult",
    "run_in_transaction",
    "sync_aleph_login",
    "sync_oauth_login",
    "sync_role_memberships",
    "sync_role_memberships_by_foreign_id",
]
