"""Stand-in for Aleph 4.1.6's `aleph.model` (the role part only): written from the facts."""
from aleph.core import db  # noqa: F401
from aleph.model.role import PasswordCredentialsError, Role, RoleBlockedError, membership  # noqa: F401
