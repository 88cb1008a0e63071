"""The Aleph plugin: Aleph's OAuth login, race-free, inside a running Aleph 4.1 or OpenAleph 5.

Installed into Aleph's image, this package declares the entry point `aleph.init` ->
`rolesync.aleph:init`. Both lines call every such entry point at the end of create_app(), in the
API server, the workers and the CLI, as `init(app=app)`. init() then:

- recognises the line (Aleph 4.1.x or OpenAleph 5.x) from its modules;
- replaces `handle_oauth` where the OAuth callback calls it (`aleph.views.sessions_api`, which
  imported it by name) and in `aleph.oauth`, and logs one line saying so.

The login it puts there parses the token as the line does, takes the groups from the line's own
`_get_groups`, and makes ONE call, sync_aleph_login() (migration 000017), in the request's
`db.session`, with the line's rules as arguments. The SQL takes a lock on the user's foreign id
before anything else, so one user's logins run one after another, and the callback's own write
to `role` afterwards (Aleph's last_login_at, then the commit) cannot deadlock with another login
of that user. It returns the user's Role, as the line's handle_oauth does; refusals raise or
return what the line's callback expects.

When the database is not ready (rolesync not migrated, or older than this plugin), each login
runs the line's own code and logs an ERROR that names the fix; the database is checked again at
the next login, so a pod that started first picks rolesync up once migrated. ROLESYNC_ALEPH=off
turns the plugin off without a rebuild. Metrics go to prometheus_client's default registry,
which Aleph's /metrics serves (multiprocess mode included).

Settings (environment):
- ROLESYNC_ALEPH: on (default) or off.
- ROLESYNC_ALEPH_MANAGED_PREFIX: unset (default: the token is the whole truth, as in both lines:
  every membership is synced) or a prefix such as "group:": memberships in groups outside it,
  granted by an admin by hand, are kept.
- ROLESYNC_ALEPH_ATTEMPTS: how many times a login runs on 40001 or 40P01 (default 5).
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from .client import AlephLoginResult, sync_aleph_login
from .errors import (
    BlockedMemberError,
    NotAGroupError,
    NotInstalledError,
    RolesyncError,
    SerializationError,
    UnknownMemberError,
    driver_error_parts,
)

log = logging.getLogger("rolesync.aleph")

#: The migration whose function the plugin calls; newer ledgers are fine.
REQUIRED_MIGRATION = "000017.sql"
ALEPH = "aleph"
OPENALEPH = "openaleph"


def _metrics() -> Any:
    """Counters and a histogram on prometheus_client's default registry (Aleph's /metrics), made once."""
    try:
        from prometheus_client import Counter, Histogram
    except ImportError:  # pragma: no cover - both lines ship prometheus_client
        return None

    class Metrics:
        logins = Counter(
            "rolesync_aleph_logins_total",
            "OAuth logins through the rolesync plugin, by result: ok, refused, fallback (the line's own code ran), error",
            ["result"],
        )
        changes = Counter(
            "rolesync_aleph_membership_changes_total",
            "Memberships the plugin's logins changed: added, removed; groups created",
            ["change"],
        )
        errors = Counter(
            "rolesync_aleph_errors_total", "Errors of the plugin's logins, by SQLSTATE (retried ones included)", ["sqlstate"]
        )
        seconds = Histogram(
            "rolesync_aleph_login_seconds",
            "Time of a plugin login: the SQL call and the role's load, retries included",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )

    return Metrics


_METRICS: Any = None
_METRICS_LOCK = threading.Lock()


def metrics() -> Any:
    global _METRICS
    with _METRICS_LOCK:
        if _METRICS is None:
            _METRICS = _metrics()
    return _METRICS


@dataclass
class Line:
    """What differs between the two lines, for the login."""

    name: str  # ALEPH or OPENALEPH
    label: str  # e.g. "Aleph 4.1.6"
    admin_rule: str
    touch: str
    update_name: bool
    api_keys: bool
    fail: Callable[[str], Any]  # the line's failure signal: raise, or return None


def _version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def detect_line() -> Line:
    """Aleph 4.1.x or OpenAleph 5.x, from the modules (both distributions are named `aleph`)."""
    import aleph.model as model
    import aleph.oauth as oauth

    version = _version("aleph")
    if hasattr(model, "RoleBlockedError") and hasattr(oauth, "OAuthError"):
        blocked, oauth_error = model.RoleBlockedError, oauth.OAuthError

        def fail_aleph(why: str) -> Any:
            # The callback answers RoleBlockedError with a redirect (403), OAuthError with 401.
            raise blocked() if why == "blocked" else oauth_error()

        return Line(ALEPH, f"Aleph {version or '4.1'}", "grant", "always", False, False, fail_aleph)
    if hasattr(model.Role, "update_groups"):
        return Line(OPENALEPH, f"OpenAleph {version or '5'}", "recompute", "on_change", True, True, lambda why: None)
    raise RuntimeError(
        "rolesync.aleph: this is neither Aleph 4.1 (aleph.model.RoleBlockedError, aleph.oauth.OAuthError) "
        "nor OpenAleph 5 (Role.update_groups)"
    )


class Plugin:
    """The login that replaces handle_oauth, and its state: the line's own code, readiness."""

    def __init__(self, app: Any, line: Line, original: Callable[..., Any]):
        self.app = app
        self.line = line
        self.original = original
        # The databases found ready, by engine URL: one in production, one per test database in tests.
        self.ready: "set[str]" = set()
        self.lock = threading.Lock()
        self.managed_prefix = os.environ.get("ROLESYNC_ALEPH_MANAGED_PREFIX") or None
        self.attempts = max(1, int(os.environ.get("ROLESYNC_ALEPH_ATTEMPTS", "5")))

    # -- readiness ----------------------------------------------------------------------------
    def check_ready(self) -> Optional[str]:
        """None when the database has what the plugin needs; else what to do.

        In the request's own session: reads that cannot fail on a reachable database (to_regclass,
        to_regprocedure, the ledger only where it exists), so that the session stays usable for
        the line's own login, and no second connection is taken from a small pool.
        """
        from aleph.core import db
        from sqlalchemy import text

        session = db.session
        installed, ledger, line_known = session.execute(
            text(
                "select pg_catalog.to_regprocedure('public.sync_aleph_login(text, text, text, text[], boolean, "
                "boolean, boolean, text, boolean, text, text, text[], text)') is not null, "
                "pg_catalog.to_regclass('rolesync.migrations') is not null, "
                "pg_catalog.to_regprocedure('rolesync.alembic_line()') is not null"
            )
        ).one()
        if not ledger:
            return "rolesync is not installed in this database: run `rolesync migrate` (or rolesync.sql with psql)"
        applied = session.execute(
            text("select count(*) from rolesync.migrations where filename = :f"), {"f": REQUIRED_MIGRATION}
        ).scalar_one()
        if not installed or not applied:
            return (
                f"rolesync in this database is older than the plugin (it needs migration {REQUIRED_MIGRATION}): "
                "run `rolesync migrate` of rolesync 0.2.0 or later"
            )
        line = session.execute(text("select rolesync.alembic_line()")).scalar_one() if line_known else None
        if self.line.name == OPENALEPH and line not in (None, "openaleph", "unknown"):
            log.warning("rolesync: %s, but the database's Alembic chain reads as %s", self.line.label, line)
        if self.line.name == ALEPH and line in ("openaleph",):
            log.warning("rolesync: %s, but the database's Alembic chain reads as OpenAleph's", self.line.label)
        return None

    def is_ready(self) -> bool:
        """Checked at the first login, and at every login until the database is ready; then no more."""
        from aleph.core import db

        key = db.engine.url.render_as_string(hide_password=True)
        if key in self.ready:
            return True
        with self.lock:
            if key in self.ready:
                return True
            try:
                problem = self.check_ready()
            except Exception as exc:  # the database does not answer yet
                db.session.rollback()
                problem = f"the database could not be checked ({exc.__class__.__name__}: {exc})"
            if problem is None:
                self.ready.add(key)
                log.info("rolesync: the database is ready; OAuth logins go through sync_aleph_login()")
                return True
        log.error("rolesync: OAuth login falls back to %s's own code: %s", self.line.label, problem)
        m = metrics()
        if m is not None:
            m.logins.labels(result="fallback").inc()
        return False

    # -- the login ------------------------------------------------------------------------------
    def handle_oauth(self, provider: Any, oauth_token: Any) -> Any:
        if not self.is_ready():
            return self.original(provider, oauth_token)
        import aleph.oauth as oauth
        from aleph.core import db
        from aleph.model import Role
        from aleph.settings import SETTINGS
        from aleph.util import is_auto_admin

        token = provider.parse_id_token(oauth_token)
        if token is None:
            return self.line.fail("token")
        name = token.get("name", token.get("given_name"))
        email = token.get("email", token.get("upn"))
        foreign_id = "%s:%s" % (SETTINGS.OAUTH_HANDLER, token.get("sub", email))
        groups = oauth._get_groups(provider, oauth_token, token)
        admin_group = any(g == SETTINGS.OAUTH_ADMIN_GROUP for g in groups)
        group_ids: List[str] = sorted("group:%s" % g for g in groups if g != SETTINGS.OAUTH_ADMIN_GROUP)
        # OpenAleph's load_or_create gives every role it creates a key: one for the user, one per group.
        api_keys = [secrets.token_urlsafe() for _ in range(1 + len(group_ids))] if self.line.api_keys else None

        m = metrics()
        started = time.monotonic()
        try:
            result = self._login(
                db.session,
                foreign_id=foreign_id,
                name=name,
                email=email,
                group_ids=group_ids,
                admin_group=admin_group,
                auto_admin=bool(is_auto_admin(email)),
                migrate_sub=bool(SETTINGS.OAUTH_MIGRATE_SUB),
                api_keys=api_keys,
            )
        except (BlockedMemberError, UnknownMemberError, NotAGroupError) as exc:
            db.session.rollback()
            if m is not None:
                m.logins.labels(result="refused").inc()
                m.errors.labels(sqlstate=exc.sqlstate or "").inc()
            log.info("rolesync: login of %s refused: %s", foreign_id, exc.message)
            return self.line.fail("blocked" if isinstance(exc, BlockedMemberError) else "not an actor")
        except NotInstalledError as exc:
            db.session.rollback()
            self.ready.discard(db.engine.url.render_as_string(hide_password=True))
            log.error("rolesync: %s; this login runs %s's own code", exc.message, self.line.label)
            if m is not None:
                m.logins.labels(result="fallback").inc()
            return self.original(provider, oauth_token)
        except Exception as exc:
            if m is not None:
                m.logins.labels(result="error").inc()
                parts = driver_error_parts(exc)
                sqlstate = getattr(exc, "sqlstate", None) or (parts or {}).get("sqlstate") or ""
                m.errors.labels(sqlstate=sqlstate).inc()
            raise
        # The user as the line's handle_oauth returns it: a Role in the request's session, as stored now.
        role = db.session.get(Role, result.member_id, populate_existing=True)
        if m is not None:
            m.seconds.observe(time.monotonic() - started)
            m.logins.labels(result="ok").inc()
            m.changes.labels(change="added").inc(len(result.added))
            m.changes.labels(change="removed").inc(len(result.removed))
            m.changes.labels(change="created").inc(len(result.created))
        if result.added or result.removed or result.created or result.member_created:
            log.info(
                "rolesync: login of %s%s: groups added %s, removed %s, created %s%s",
                foreign_id,
                " (new user)" if result.member_created else "",
                result.added,
                result.removed,
                result.created,
                f", skipped (soft-deleted) {result.skipped}" if result.skipped else "",
            )
        return role

    def _login(self, session: Any, **kw: Any) -> AlephLoginResult:
        """The call, retried on 40001 and 40P01 (a rolling deploy's old pods beside new ones)."""
        for attempt in range(1, self.attempts + 1):
            try:
                return sync_aleph_login(
                    session,
                    kw["foreign_id"],
                    kw["name"],
                    kw["email"],
                    kw["group_ids"],
                    admin_group=kw["admin_group"],
                    auto_admin=kw["auto_admin"],
                    migrate_sub=kw["migrate_sub"],
                    email_rule="on_create",
                    update_name=self.line.update_name,
                    admin_rule=self.line.admin_rule,
                    touch=self.line.touch,
                    api_keys=kw["api_keys"],
                    managed_prefix=self.managed_prefix,
                )
            except RolesyncError as exc:
                if not isinstance(exc, SerializationError) or attempt == self.attempts:
                    raise
                retry = exc
            except Exception as exc:
                parts = driver_error_parts(exc)
                if parts is None or parts["sqlstate"] not in ("40001", "40P01") or attempt == self.attempts:
                    raise
                retry = exc
            # The callback's session holds nothing of its own before the login: rolling back loses nothing.
            session.rollback()
            m = metrics()
            if m is not None:
                parts = driver_error_parts(retry)
                m.errors.labels(sqlstate=(parts or {}).get("sqlstate") or getattr(retry, "sqlstate", "") or "").inc()
            log.warning("rolesync: login of %s retried (%s of %s): %s", kw["foreign_id"], attempt, self.attempts, retry)
            time.sleep(0.01 * (2 ** (attempt - 1)) * (0.5 + random.random()))
        raise AssertionError("unreachable")


_PLUGIN: Optional[Plugin] = None


def init(app: Any = None) -> Optional[Plugin]:
    """The `aleph.init` entry point: replaces handle_oauth, unless ROLESYNC_ALEPH=off."""
    global _PLUGIN
    setting = os.environ.get("ROLESYNC_ALEPH", "on").strip().lower()
    if setting in ("off", "0", "false", "no"):
        log.info("rolesync: off (ROLESYNC_ALEPH=%s): OAuth logins run Aleph's own code", setting)
        return None
    if setting not in ("on", "1", "true", "yes", ""):
        log.error("rolesync: ROLESYNC_ALEPH must be on or off, not %r: the plugin stays off", setting)
        return None
    import aleph.oauth as oauth

    # The module, from sys.modules: both lines' aleph/views/__init__.py re-export its blueprint
    # under the module's name, so `import aleph.views.sessions_api as x` would give the Blueprint.
    sessions_api = importlib.import_module("aleph.views.sessions_api")
    current = sessions_api.handle_oauth
    if _PLUGIN is not None and getattr(current, "__self__", None) is _PLUGIN:
        return _PLUGIN  # create_app() ran again in this process: already in place
    line = detect_line()
    original = oauth.handle_oauth if getattr(oauth.handle_oauth, "__self__", None) is None else _PLUGIN.original  # type: ignore[union-attr]
    plugin = Plugin(app, line, original)
    sessions_api.handle_oauth = plugin.handle_oauth
    oauth.handle_oauth = plugin.handle_oauth
    _PLUGIN = plugin
    metrics()
    log.info(
        "rolesync: %s's handle_oauth replaced in aleph.views.sessions_api and aleph.oauth by one sync_aleph_login() call "
        "(ROLESYNC_ALEPH=off turns it off)",
        line.label,
    )
    return plugin
