"""Stand-in for OpenAleph 5.3's `aleph.settings`: written from the facts, not OpenAleph's code.

OpenAleph reads the same login variables as Aleph, once, at import, into
`SETTINGS`. Its database URI is OPENALEPH_DB_URI, else ALEPH_DATABASE_URI, and
its connection pool is configured from the environment too.
"""
import os
from typing import List, Optional

_TRUE = {"1", "t", "true", "y", "yes", "on", "enabled"}


def _text(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None else value


def _optional(name: str) -> Optional[str]:
    return os.environ.get(name)


def _number(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


def _flag(name: str, default: bool) -> bool:
    """Unset or blank: the default; else true for the usual spellings of yes."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in _TRUE


def _items(name: str) -> List[str]:
    """A list from the environment.

    OpenAleph (through servicelayer) splits on ':'. The stand-in also accepts
    ',' so either spelling works in tests; no e-mail address contains either.
    """
    value = os.environ.get(name)
    if value is None:
        return []
    return [item.strip() for item in value.replace(",", ":").split(":") if item.strip()]


class Settings:
    def __init__(self) -> None:
        self.DEBUG = _flag("ALEPH_DEBUG", False)
        self.SECRET_KEY = _text("ALEPH_SECRET_KEY", "rolesync-standin")
        self.APP_UI_URL = _text("ALEPH_UI_URL", "http://localhost:8080/")

        # E-mail addresses that are admins (recomputed on every login).
        self.ADMINS = _items("ALEPH_ADMINS")

        self.OAUTH = _flag("ALEPH_OAUTH", False)
        self.OAUTH_HANDLER = _text("ALEPH_OAUTH_HANDLER", "oidc")
        self.OAUTH_MIGRATE_SUB = _flag("ALEPH_OAUTH_MIGRATE_SUB", True)
        self.OAUTH_ADMIN_GROUP = _text("ALEPH_OAUTH_ADMIN_GROUP", "superuser")
        self.OAUTH_KEY = _text("ALEPH_OAUTH_KEY", "aleph")

        self.DATABASE_URI = _optional("OPENALEPH_DB_URI") or _optional("ALEPH_DATABASE_URI")
        self.SQLALCHEMY_TRACK_MODIFICATIONS = False
        self.SQLALCHEMY_MAX_POOL_SIZE = _number("ALEPH_SQLALCHEMY_POOL_SIZE", 5)
        self.SQLALCHEMY_POOL_RECYCLE = _number("ALEPH_SQLALCHEMY_POOL_RECYCLE", 3600)
        self.SQLALCHEMY_POOL_TIMEOUT = _number("ALEPH_SQLALCHEMY_POOL_TIMEOUT", 30)


SETTINGS = Settings()
