"""The plugin inside the stand-in's Aleph: found through its entry point, on or off, its startup line,
its fallback while the database is not ready, its retries, its INFO lines and its metrics (in
prometheus_client's multiprocess mode too, which Aleph's /metrics reads)."""
import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import psycopg
import pytest

from support import standin
from support.db import SCHEMA_OF_LINE, install_rolesync

LINE = standin.current_line()
ALEPH = standin.is_aleph41(LINE)
TESTS = Path(__file__).resolve().parents[1]


def _callback(url: str, claims: Dict[str, Any]) -> Any:
    from aleph import core
    from aleph.oauth import make_oauth_token, provider
    from aleph.settings import SETTINGS
    sessions_api = importlib.import_module("aleph.views.sessions_api")  # the module; aleph.views.sessions_api is the blueprint

    saved = SETTINGS.DATABASE_URI
    SETTINGS.DATABASE_URI = url
    try:
        app = core.create_app()
        with app.app_context():
            result = sessions_api.oauth_callback(provider, make_oauth_token(claims))
            core.db.session.remove()
            core.db.engine.dispose()
        return result
    finally:
        SETTINGS.DATABASE_URI = saved


def _seed_groups(url: str) -> None:
    with psycopg.connect(url) as c:
        c.execute(
            """insert into public.role (foreign_id, name, type, api_key, is_admin, is_muted, is_blocked, is_tester, created_at, updated_at)
               values ('group:alpha', 'alpha', 'group', 'k', false, false, false, false, now(), now())"""
        )


def _subprocess(code: str, env: Dict[str, str]) -> Dict[str, Any]:
    """Runs `code` in a fresh interpreter with the stand-in of this line; its last stdout line is JSON."""
    script = (
        "import sys, json, logging\n"
        "sys.path.insert(0, %r)\n"
        "from support import standin\n"
        "standin.activate(%r)\n"
        "logging.basicConfig(level=logging.INFO, format='%%(name)s %%(levelname)s %%(message)s', stream=sys.stderr)\n"
        % (str(TESTS), LINE)
    ) + code
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ALEPH_", "OPENALEPH_", "ROLESYNC_ALEPH"))}
    full_env.update(env)
    done = subprocess.run([sys.executable, "-c", script], env=full_env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["log"] = done.stderr
    return out


def test_create_app_loads_the_plugin_through_its_entry_point_and_logs_one_line(make_database):
    db = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    out = _subprocess(
        "from aleph.core import create_app, get_extensions\n"
        "import aleph.oauth, importlib; api = importlib.import_module('aleph.views.sessions_api')\n"
        "app = create_app()\n"
        "print(json.dumps({'plugins': ['%s:%s' % (p.__module__, p.__name__) for p in get_extensions('aleph.init')],\n"
        "                  'callback': api.handle_oauth.__qualname__, 'oauth': aleph.oauth.handle_oauth.__qualname__}))\n",
        {"ALEPH_DATABASE_URI": db.url},
    )
    assert out["plugins"] == ["rolesync.aleph:init"]
    assert out["callback"] == out["oauth"] == "Plugin.handle_oauth"
    lines = [l for l in out["log"].splitlines() if "handle_oauth replaced" in l]
    assert len(lines) == 1, out["log"]
    assert lines[0].startswith("rolesync.aleph INFO rolesync: %s" % ("Aleph" if ALEPH else "OpenAleph"))
    assert "ROLESYNC_ALEPH=off turns it off" in lines[0]


def test_rolesync_aleph_off_leaves_the_line_s_login_alone(make_database):
    db = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    out = _subprocess(
        "from aleph.core import create_app\n"
        "import aleph.oauth, importlib; api = importlib.import_module('aleph.views.sessions_api')\n"
        "original = aleph.oauth.handle_oauth\n"
        "create_app()\n"
        "print(json.dumps({'same': api.handle_oauth is original and aleph.oauth.handle_oauth is original}))\n",
        {"ALEPH_DATABASE_URI": db.url, "ROLESYNC_ALEPH": "off"},
    )
    assert out["same"] is True
    assert "rolesync: off (ROLESYNC_ALEPH=off)" in out["log"]


def test_a_database_without_rolesync_falls_back_to_the_line_s_code_until_migrated(make_database, caplog):
    db = make_database(SCHEMA_OF_LINE[LINE])
    _seed_groups(db.url)
    caplog.set_level(logging.INFO, logger="rolesync.aleph")
    first = _callback(db.url, {"sub": "early", "name": "Early", "email": "early@example.org", "groups": ["alpha"]})
    assert first.ok
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "falls back to" in errors[0].getMessage() and "run `rolesync migrate`" in errors[0].getMessage()
    caplog.clear()
    install_rolesync(db.url)
    second = _callback(db.url, {"sub": "early", "name": "Early", "email": "early@example.org", "groups": []})
    assert second.ok
    messages = [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], messages
    assert any("the database is ready" in m for m in messages)
    assert any("login of oidc:early: groups added [], removed ['group:alpha']" in m for m in messages)


def test_an_older_rolesync_is_named_as_such(make_database, caplog):
    db = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    with psycopg.connect(db.url, autocommit=True) as c:
        c.execute("delete from rolesync.migrations where filename >= '000017.sql'")
        c.execute(
            "drop function public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text)"
        )
    caplog.set_level(logging.INFO, logger="rolesync.aleph")
    assert _callback(db.url, {"sub": "x", "name": "X", "groups": []}).ok
    message = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR][0]
    assert "older than the plugin (it needs migration 000017.sql)" in message


def test_a_deadlock_or_serialization_failure_is_retried(make_database, monkeypatch, caplog):
    import rolesync.aleph as plugin_module
    from rolesync.errors import SerializationError

    db = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    real = plugin_module.sync_aleph_login
    calls: List[int] = []

    def flaky(session: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            # A real 40P01 first: the statement fails in the session's transaction, as a deadlock would.
            from sqlalchemy import text

            session.execute(text("select pg_advisory_xact_lock(1)"))
            raise SerializationError("deadlock detected", "40P01")
        return real(session, *args, **kwargs)

    monkeypatch.setattr(plugin_module, "sync_aleph_login", flaky)
    caplog.set_level(logging.INFO, logger="rolesync.aleph")
    before = _metric("rolesync_aleph_errors_total", {"sqlstate": "40P01"})
    result = _callback(db.url, {"sub": "retried", "name": "R", "groups": []})
    assert result.ok and len(calls) == 2
    assert any("retried (1 of 5)" in r.getMessage() for r in caplog.records)
    assert _metric("rolesync_aleph_errors_total", {"sqlstate": "40P01"}) == before + 1


def _metric(name: str, labels: Dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


def test_metrics_count_logins_changes_and_time(make_database):
    db = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    _seed_groups(db.url)
    ok = _metric("rolesync_aleph_logins_total", {"result": "ok"})
    added = _metric("rolesync_aleph_membership_changes_total", {"change": "added"})
    created = _metric("rolesync_aleph_membership_changes_total", {"change": "created"})
    timed = _metric("rolesync_aleph_login_seconds_count", {})
    assert _callback(db.url, {"sub": "m", "name": "M", "groups": ["alpha", "new-one"]}).ok
    assert _metric("rolesync_aleph_logins_total", {"result": "ok"}) == ok + 1
    assert _metric("rolesync_aleph_membership_changes_total", {"change": "added"}) == added + 2
    assert _metric("rolesync_aleph_membership_changes_total", {"change": "created"}) == created + 1
    assert _metric("rolesync_aleph_login_seconds_count", {}) == timed + 1
    refused = _metric("rolesync_aleph_logins_total", {"result": "refused"})
    with psycopg.connect(db.url, autocommit=True) as c:
        c.execute("update public.role set is_blocked = true where foreign_id = 'oidc:m'")
    blocked = _callback(db.url, {"sub": "m", "name": "M", "groups": []})
    assert blocked.status == (403 if ALEPH else 401)
    assert _metric("rolesync_aleph_logins_total", {"result": "refused"}) == refused + 1
    assert _metric("rolesync_aleph_errors_total", {"sqlstate": "RS006"}) >= 1


def test_metrics_in_prometheus_multiprocess_mode_reach_what_aleph_s_metrics_endpoint_reads(make_database, tmp_path):
    db = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    _seed_groups(db.url)
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    out = _subprocess(
        "from aleph.core import create_app, db\n"
        "from aleph.oauth import make_oauth_token, provider\n"
        "import importlib; sessions_api = importlib.import_module('aleph.views.sessions_api')\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    r = sessions_api.oauth_callback(provider, make_oauth_token({'sub': 'mp', 'name': 'MP', 'groups': ['alpha']}))\n"
        "print(json.dumps({'status': r.status}))\n",
        {"ALEPH_DATABASE_URI": db.url, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
    )
    assert out["status"] == 200
    # What Aleph's /metrics view does: a fresh registry with the multiprocess collector.
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc))
    body = generate_latest(registry).decode()
    assert 'rolesync_aleph_logins_total{result="ok"} 1.0' in body
    assert 'rolesync_aleph_membership_changes_total{change="added"} 1.0' in body
    assert "rolesync_aleph_login_seconds_bucket" in body


def test_two_users_logins_never_wait_on_each_other(make_database):
    """User A's callback is held open after its login (before its commit); user B's completes meanwhile."""
    import threading

    from sqlalchemy import event

    from aleph import core
    from aleph.oauth import make_oauth_token, provider
    from aleph.settings import SETTINGS
    sessions_api = importlib.import_module("aleph.views.sessions_api")  # the module; aleph.views.sessions_api is the blueprint

    db = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    _seed_groups(db.url)
    saved = SETTINGS.DATABASE_URI
    SETTINGS.DATABASE_URI = db.url
    try:
        app = core.create_app()
    finally:
        SETTINGS.DATABASE_URI = saved
    holding = threading.Event()
    release = threading.Event()
    results: Dict[str, Any] = {}

    def hold(session: Any) -> None:
        if getattr(threading.current_thread(), "name", "") == "user-a":
            holding.set()
            release.wait(30)

    def login(name: str) -> None:
        with app.app_context():
            results[name] = sessions_api.oauth_callback(provider, make_oauth_token({"sub": name, "name": name, "groups": ["alpha", "fresh-%s" % name]}))
            core.db.session.remove()

    with app.app_context():
        event.listen(core.db.session.registry().__class__, "before_commit", hold)
    try:
        a = threading.Thread(target=login, args=("user-a",), name="user-a")
        a.start()
        assert holding.wait(30), "user A's login did not reach its commit"
        b = threading.Thread(target=login, args=("user-b",), name="user-b")
        b.start()
        b.join(10)
        assert not b.is_alive(), "user B waited on user A"
        assert results["user-b"].ok
    finally:
        release.set()
        a.join(30)
        with app.app_context():
            event.remove(core.db.session.registry().__class__, "before_commit", hold)
            core.db.engine.dispose()
    assert results["user-a"].ok
