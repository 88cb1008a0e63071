"""Stand-in for OpenAleph 5.3's `aleph.core`: written from the facts, not OpenAleph's code.

What counts here: one Flask-SQLAlchemy object, `db`, whose session the login
runs in; `create_app()` pointing it at PostgreSQL through psycopg 3, with
OpenAleph's pool options (one pooled connection, overflow up to
ALEPH_SQLALCHEMY_POOL_SIZE, pre-ping, and psycopg's server-side prepare after
five executions); and, last, every entry point of the group `aleph.init`
called as `plugin(app=app)`, as OpenAleph does through openaleph-servicelayer.
"""
import logging
import sys
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from aleph.settings import SETTINGS

log = logging.getLogger(__name__)

db = SQLAlchemy()

DRIVER = "postgresql+psycopg"

_extensions: Dict[str, List[Callable[..., Any]]] = {}
_extensions_lock = threading.RLock()


def _entry_points(group: str) -> list:
    from importlib import metadata

    if sys.version_info >= (3, 10):
        return list(metadata.entry_points(group=group))
    return list(metadata.entry_points().get(group, []))


def get_extensions(group: str) -> List[Callable[..., Any]]:
    """The objects registered under an entry-point group, loaded once per process.

    An entry point that fails to load is logged and left out; what a loaded
    plugin does when called is the caller's business.
    """
    with _extensions_lock:
        if group not in _extensions:
            loaded: List[Callable[..., Any]] = []
            for entry_point in _entry_points(group):
                try:
                    loaded.append(entry_point.load())
                except Exception:
                    log.exception("Error loading extension %s", entry_point.name)
            _extensions[group] = loaded
        return list(_extensions[group])


def sqlalchemy_uri(uri: str) -> str:
    """The database URI with this line's driver named in it."""
    for scheme in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if uri.startswith(scheme):
            return DRIVER + "://" + uri[len(scheme):]
    return uri


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    app = Flask("aleph")
    app.config.from_object(SETTINGS)
    app.config.update(dict(config or {}))

    if not SETTINGS.DATABASE_URI or "postgres" not in SETTINGS.DATABASE_URI:
        raise RuntimeError("aleph database must be PostgreSQL!")
    # As in OpenAleph, the database comes from SETTINGS, not from `config`.
    app.config.update(
        {
            "SQLALCHEMY_DATABASE_URI": sqlalchemy_uri(SETTINGS.DATABASE_URI),
            "SQLALCHEMY_ENGINE_OPTIONS": {
                "pool_pre_ping": True,
                "pool_size": 1,
                "max_overflow": SETTINGS.SQLALCHEMY_MAX_POOL_SIZE,
                "pool_recycle": SETTINGS.SQLALCHEMY_POOL_RECYCLE,
                "pool_timeout": SETTINGS.SQLALCHEMY_POOL_TIMEOUT,
                "connect_args": {"prepare_threshold": 5},
            },
            "FLASK_SKIP_DOTENV": True,
        }
    )
    db.init_app(app)

    from aleph.views import mount_app_blueprints

    mount_app_blueprints(app)

    for plugin in get_extensions("aleph.init"):
        plugin(app=app)
    return app
