"""Stand-in for OpenAleph 5.3's `aleph.model` (the role part only): written from the facts."""
from aleph.core import db  # noqa: F401
from aleph.model.role import Role, membership  # noqa: F401
