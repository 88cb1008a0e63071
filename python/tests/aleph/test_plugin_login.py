"""The plugin, one login at a time, field by field against the line's own code.

For each case two identical databases (the line's schema, rolesync migrated, the same rows) get
the same token through the stand-in's whole OAuth callback: one with the line's own handle_oauth,
one with the plugin's. Then every row of role (keyed by foreign id, every column) and every
membership are compared. A timestamp written during the login reads "during the login"; an api
key the login made reads "a new key". The only differences allowed are the intended ones, each
asserted as exactly that:
- a soft-deleted user: the line answers with a 500 (its check-then-insert hits role_foreign_id_key),
  the plugin refuses cleanly; neither changes anything;
- OpenAleph gives an existing group without an api key one during a login; the plugin never writes
  an existing group's row;
- with the opt-in (a managed prefix), a membership an admin granted by hand is kept.
Everything runs on the stand-in ROLESYNC_STANDIN names: both lines, in two pytest runs.
"""
import importlib
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Dict, Iterator, List, Optional, Tuple

import psycopg
import pytest

from support import standin
from support.db import SCHEMA_OF_LINE

LINE = standin.current_line()
ALEPH = standin.is_aleph41(LINE)

# The rows every case starts from, as the line would have made them.
SEED = """
insert into public.role (foreign_id, name, email, type, api_key, deleted_at, is_admin, is_muted, is_blocked, is_tester,
                         created_at, updated_at)
values ('oidc:alice', 'Alice', 'alice@example.org', 'user', %(key)s, null, false, false, false, false, '2024-01-01', '2024-01-01'),
       ('oidc:mallory', 'Mallory', 'mallory@example.org', 'user', %(key)s, null, false, false, true, false, '2024-01-01', '2024-01-01'),
       ('oidc:gone', 'Gone', 'gone@example.org', 'user', %(key)s, '2024-02-01', false, false, false, false, '2024-01-01', '2024-01-01'),
       ('ldap:bob', 'Bob', 'Bob@Example.org', 'user', %(key)s, null, false, false, false, false, '2024-01-01', '2024-01-01'),
       ('group:alpha', 'alpha', null, 'group', %(key)s, null, false, false, false, false, '2024-01-01', '2024-01-01'),
       ('group:beta', 'beta', null, 'group', %(key)s, null, false, false, false, false, '2024-01-01', '2024-01-01'),
       ('group:keyless', 'keyless', null, 'group', null, null, false, false, false, false, '2024-01-01', '2024-01-01'),
       ('manual:auditors', 'auditors', null, 'group', %(key)s, null, false, false, false, false, '2024-01-01', '2024-01-01');
insert into public.role_membership (group_id, member_id)
select g.id, u.id from public.role g, public.role u
 where (u.foreign_id, g.foreign_id) in (('oidc:alice', 'group:alpha'), ('oidc:alice', 'manual:auditors'),
                                        ('oidc:mallory', 'group:alpha'), ('ldap:bob', 'group:beta'));
"""


@dataclass
class Case:
    key: str
    claims: Dict[str, Any]
    settings: Dict[str, Any] = field(default_factory=dict)
    lines: Tuple[str, ...] = (standin.ALEPH41, standin.OPENALEPH53)
    managed_prefix: Optional[str] = None


CASES = [
    Case("new user", {"sub": "carol", "name": "Carol", "email": "carol@example.org", "groups": ["alpha", "gamma"]}),
    Case("existing user, groups differ", {"sub": "alice", "name": "Alice", "email": "alice@example.org", "groups": ["beta"]}),
    Case("existing user, same groups", {"sub": "alice", "name": "Alice", "email": "alice@example.org", "groups": ["alpha"]}),
    Case("changed email", {"sub": "alice", "name": "Alice", "email": "alice@new.example", "groups": ["alpha"]}),
    Case("changed name", {"sub": "alice", "name": "Alice Liddell", "email": "alice@example.org", "groups": ["alpha"]}),
    Case("blocked user", {"sub": "mallory", "name": "Mallory", "email": "mallory@example.org", "groups": ["beta", "delta"]}),
    Case("admin group", {"sub": "alice", "name": "Alice", "email": "alice@example.org", "groups": ["alpha", "superuser"]}),
    Case("auto-admin, new user", {"sub": "dave", "name": "Dave", "email": "Dave@Example.org", "groups": []},
         {"ADMINS": ["dave@example.org"]}),
    Case("auto-admin, existing user", {"sub": "alice", "name": "Alice", "email": "alice@example.org", "groups": ["alpha"]},
         {"ADMINS": ["alice@example.org"]}),
    Case("OAUTH_MIGRATE_SUB re-key", {"sub": "bob-2", "email": "bob@example.org", "groups": ["beta"]},
         {"OAUTH_MIGRATE_SUB": True}),
    Case("OAUTH_MIGRATE_SUB off: a new user", {"sub": "bob-2", "email": "bob@example.org", "groups": ["beta"]},
         {"OAUTH_MIGRATE_SUB": False}),
    Case("no groups", {"sub": "alice", "name": "Alice", "email": "alice@example.org", "groups": []}),
    Case("a membership granted by hand, without the opt-in", {"sub": "alice", "name": "Alice", "groups": ["beta"]}),
    Case("a membership granted by hand, with the opt-in", {"sub": "alice", "name": "Alice", "groups": ["beta"]},
         managed_prefix="group:"),
    Case("soft-deleted user", {"sub": "gone", "name": "Gone", "email": "gone@example.org", "groups": ["alpha"]}),
    Case("an existing group without an api key", {"sub": "alice", "name": "Alice", "groups": ["keyless"]},
         lines=(standin.OPENALEPH53,)),
    Case("no token", {}),
]


@dataclass
class Outcome:
    status: int
    error: Optional[str]
    roles: Dict[str, Dict[str, Any]]
    memberships: List[Tuple[str, str]]


@contextlib.contextmanager
def settings(values: Dict[str, Any]) -> Iterator[None]:
    from aleph.settings import SETTINGS

    saved = {k: getattr(SETTINGS, k) for k in values}
    for k, v in values.items():
        setattr(SETTINGS, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(SETTINGS, k, v)


def _snapshot(url: str, seeded: Dict[int, Dict[str, Any]], start: datetime, end: datetime) -> Tuple[Dict[str, Dict[str, Any]], List[Tuple[str, str]]]:
    with psycopg.connect(url) as c:
        cur = c.execute("select * from public.role order by foreign_id")
        names = [d.name for d in cur.description]
        roles: Dict[str, Dict[str, Any]] = {}
        for row in cur.fetchall():
            record = dict(zip(names, row))
            before = seeded.get(record.pop("id"), {})  # the same row before the login (a re-key changes its foreign id)
            fid = record["foreign_id"]
            for col, value in record.items():
                if isinstance(value, datetime) and value != before.get(col):
                    # Set during the login: UTC (Aleph's utcnow) or the server's zone (an aware datetime stored naive).
                    assert start - timedelta(hours=14) <= value <= end + timedelta(hours=14), (fid, col, value)
                    record[col] = "during the login"
            if record.get("api_key") is not None and record["api_key"] != before.get("api_key"):
                record["api_key"] = "a new key"
            roles[fid] = record
        pairs = c.execute(
            """select u.foreign_id, g.foreign_id from public.role_membership m
                 join public.role u on u.id = m.member_id join public.role g on g.id = m.group_id order by 1, 2"""
        ).fetchall()
    return roles, [tuple(p) for p in pairs]


def _login(url: str, case: Case, use_plugin: bool) -> Outcome:
    import rolesync.aleph as plugin_module
    from aleph import core
    from aleph.oauth import make_oauth_token, provider
    from aleph.settings import SETTINGS
    sessions_api = importlib.import_module("aleph.views.sessions_api")  # the module; aleph.views.sessions_api is the blueprint

    with psycopg.connect(url) as c:
        cur = c.execute("select * from public.role")
        names = [d.name for d in cur.description]
        seeded = {dict(zip(names, r))["id"]: dict(zip(names, r)) for r in cur.fetchall()}
    with settings(dict(case.settings, DATABASE_URI=url)):
        app = core.create_app()
        plugin = plugin_module._PLUGIN
        assert plugin is not None and sessions_api.handle_oauth == plugin.handle_oauth, "the entry point replaced handle_oauth"
        saved_prefix = plugin.managed_prefix
        plugin.managed_prefix = case.managed_prefix
        if not use_plugin:
            sessions_api.handle_oauth = plugin.original
        try:
            with app.app_context():
                start = datetime.utcnow()
                result = sessions_api.oauth_callback(provider, make_oauth_token(case.claims or None))
                end = datetime.utcnow()
                core.db.session.remove()
            with app.app_context():
                core.db.engine.dispose()
        finally:
            sessions_api.handle_oauth = plugin.handle_oauth
            plugin.managed_prefix = saved_prefix
    roles, pairs = _snapshot(url, seeded, start, end)
    error = type(result.error).__name__ if result.error is not None else None
    return Outcome(result.status, error, roles, pairs)


@pytest.fixture
def twin(make_database):
    """Two identical databases for one case: the line's own login on one, the plugin's on the other."""

    def make() -> Tuple[str, str]:
        urls = []
        for _ in range(2):
            db = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
            with psycopg.connect(db.url) as c:
                for statement in SEED.split(";"):
                    if statement.strip():
                        c.execute(statement, {"key": "seeded-key"} if "%(key)s" in statement else None)
            urls.append(db.url)
        return urls[0], urls[1]

    return make


@pytest.mark.parametrize("case", [c for c in CASES if LINE in c.lines], ids=lambda c: c.key)
def test_the_plugin_leaves_the_database_as_the_line_does(twin, case: Case) -> None:
    own_url, plugin_url = twin()
    own = _login(own_url, case, use_plugin=False)
    mine = _login(plugin_url, case, use_plugin=True)

    if case.key == "soft-deleted user":
        # The line's check-then-insert: by_foreign_id skips the deleted row, the insert hits role_foreign_id_key.
        assert (own.status, own.error) == (500, "IntegrityError")
        # The plugin refuses it as the line refuses a user that is not an actor.
        assert (mine.status, mine.error) == ((401, "OAuthError") if ALEPH else (401, None))
        assert (own.roles, own.memberships) == (mine.roles, mine.memberships)
        return

    assert (mine.status, mine.error) == (own.status, own.error)
    if case.key == "an existing group without an api key":
        # OpenAleph's load_or_create writes a key into the existing group; the plugin writes no existing group.
        assert own.roles["group:keyless"]["api_key"] == "a new key" and own.roles["group:keyless"]["updated_at"] == mine.roles["group:keyless"]["updated_at"]
        assert mine.roles["group:keyless"]["api_key"] is None
        own.roles["group:keyless"]["api_key"] = None
    if case.managed_prefix is not None:
        # The opt-in: the membership an admin granted by hand stays; the line's clear_roles() removes it.
        assert ("oidc:alice", "manual:auditors") in mine.memberships and ("oidc:alice", "manual:auditors") not in own.memberships
        mine.memberships.remove(("oidc:alice", "manual:auditors"))
    assert mine.roles == own.roles
    assert mine.memberships == own.memberships


def test_the_cases_change_what_they_say(twin) -> None:
    """A check of the comparison itself: the plugin's login really changed the rows the cases are about."""
    _, url = twin()
    out = _login(url, Case("x", {"sub": "alice", "name": "Alice", "groups": ["beta", "superuser"]}), use_plugin=True)
    assert out.status == 200
    assert [p for p in out.memberships if p[0] == "oidc:alice"] == [("oidc:alice", "group:beta")]
    assert out.roles["oidc:alice"]["is_admin"] is True
    assert out.roles["oidc:alice"]["updated_at"] == ("during the login" if ALEPH else "during the login")
    if ALEPH:
        assert out.roles["oidc:alice"]["last_login_at"] == "during the login"
    else:
        assert "last_login_at" not in out.roles["oidc:alice"]
