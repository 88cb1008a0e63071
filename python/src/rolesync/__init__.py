"""rolesync: race-free group-membership sync for PostgreSQL, from Python.

The client (sync_role_memberships, sync_role_memberships_by_foreign_id, sync_oauth_login,
sync_aleph_login, run_in_transaction) takes a DB-API connection (psycopg2 or psycopg 3) or a
SQLAlchemy Connection or Session. The Aleph plugin is rolesync.aleph (entry point `aleph.init`).
"""

from ._version import __version__
from .client import (
    AlephLoginResult,
    OAuthLoginResult,
    SyncByForeignIdResult,
    SyncResult,
    run_in_transaction,
    sync_aleph_login,
    sync_oauth_login,
    sync_role_memberships,
    sync_role_memberships_by_foreign_id,
)
from .errors import (
    BlockedMemberError,
    InvalidArgumentError,
    NotAGroupError,
    NotInstalledError,
    NullArgumentError,
    OutdatedError,
    RolesyncError,
    SelfMembershipError,
    SerializationError,
    UnknownGroupError,
    UnknownMemberError,
    UnmanagedGroupError,
    error_class,
    to_rolesync_error,
)

__all__ = [
    "__version__",
    "AlephLoginResult",
    "BlockedMemberError",
    "InvalidArgumentError",
    "NotAGroupError",
    "NotInstalledError",
    "NullArgumentError",
    "OAuthLoginResult",
    "OutdatedError",
    "RolesyncError",
    "SelfMembershipError",
    "SerializationError",
    "SyncByForeignIdResult",
    "SyncResult",
    "UnknownGroupError",
    "UnknownMemberError",
    "UnmanagedGroupError",
    "error_class",
    "run_in_transaction",
    "sync_aleph_login",
    "sync_oauth_login",
    "sync_role_memberships",
    "sync_role_memberships_by_foreign_id",
    "to_rolesync_error",
]
