"""Typed errors: one class per kind of SQLSTATE rolesync raises, from the one table (src/sqlstates.ts).

The classes mirror the TypeScript client's (src/client.ts), and _sqlstates.py, generated from
the same list, maps each code to its class. A code the table maps to no class is passed through
as the driver raised it.
"""

from typing import Any, Dict, Optional, Type

from ._sqlstates import SQLSTATES


class RolesyncError(Exception):
    """Base class of every error the client raises from a SQLSTATE, or about rolesync's install."""

    def __init__(self, message: str, sqlstate: Optional[str] = None, hint: Optional[str] = None, cause: Any = None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.hint = hint
        self.__cause__ = cause

    def __str__(self) -> str:
        code = f"{self.sqlstate}: " if self.sqlstate else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{code}{self.message}{hint}"


class NullArgumentError(RolesyncError):
    """22004: an argument or an element of a list is NULL."""


class InvalidArgumentError(RolesyncError):
    """22023 or 22001: a malformed list, an empty or over-long name, a rule that is none of its values."""


class UnknownMemberError(RolesyncError):
    """RS001: the member does not exist or is soft-deleted."""


class UnknownGroupError(RolesyncError):
    """RS002: a group does not exist or is soft-deleted."""


class NotAGroupError(RolesyncError):
    """RS003: a role that is not a group (or, logging in, a member that is not a user)."""


class SelfMembershipError(RolesyncError):
    """RS004: the member is in its own list."""


class UnmanagedGroupError(RolesyncError):
    """RS005: a group outside managed_prefix."""


class BlockedMemberError(RolesyncError):
    """RS006: the member is blocked."""


class SerializationError(RolesyncError):
    """40001 or 40P01: retry the whole transaction (run_in_transaction does)."""


class NotInstalledError(RolesyncError):
    """rolesync's function is missing because rolesync is not installed in this database (42883)."""


class OutdatedError(NotInstalledError):
    """rolesync is installed, but older than this client: its function is missing (42883)."""


_CLASSES: Dict[str, Type[RolesyncError]] = {
    cls.__name__: cls
    for cls in (
        NullArgumentError,
        InvalidArgumentError,
        UnknownMemberError,
        UnknownGroupError,
        NotAGroupError,
        SelfMembershipError,
        UnmanagedGroupError,
        BlockedMemberError,
        SerializationError,
    )
}


def error_class(sqlstate: str) -> Optional[Type[RolesyncError]]:
    """The typed error for a SQLSTATE, as src/sqlstates.ts says; None: the error is passed through."""
    entry = SQLSTATES.get(sqlstate)
    if entry is None or entry[0] is None:
        return None
    return _CLASSES[entry[0]]


def driver_error_parts(exc: BaseException) -> Optional[Dict[str, Optional[str]]]:
    """The SQLSTATE, message and hint of a psycopg2, psycopg 3 or SQLAlchemy-wrapped error; None for others."""
    orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's error
    err = orig if orig is not None else exc
    code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    if not code:
        return None
    diag = getattr(err, "diag", None)
    message = getattr(diag, "message_primary", None) if diag is not None else None
    hint = getattr(diag, "message_hint", None) if diag is not None else None
    return {"sqlstate": code, "message": message or str(err).strip().splitlines()[0], "hint": hint}


def to_rolesync_error(exc: BaseException) -> BaseException:
    """The typed error for a driver error with a SQLSTATE rolesync maps; else the error itself."""
    parts = driver_error_parts(exc)
    if parts is None:
        return exc
    cls = error_class(parts["sqlstate"] or "")
    if cls is None:
        return exc
    return cls(parts["message"] or "", parts["sqlstate"], parts["hint"], cause=exc)
