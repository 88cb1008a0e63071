"""The Python client (rolesync.client): every function, on every kind of connection it takes, and every SQLSTATE.

Each test runs on a fresh Aleph 4.1.6 database with rolesync migrated by the CLI, as an operator
would. The client takes a DB-API connection (psycopg2, psycopg 3) or a SQLAlchemy Connection or
Session; each function is one statement in the caller's transaction, and returns a typed result.
"""
import ast
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, List

import psycopg
import psycopg2
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import rolesync
from rolesync import errors
from rolesync._sqlstates import SQLSTATES

SRC = Path(rolesync.__file__).resolve().parent


def _sa_url(url: str, driver: str) -> str:
    return url.replace("postgres://", "postgresql+%s://" % driver, 1).replace("postgresql://", "postgresql+%s://" % driver, 1)


@pytest.fixture
def db(make_database):
    return make_database("aleph41", rolesync=True)


@pytest.fixture
def seeded(db):
    """Alice (user 1) and groups research (11), retired (12, soft-deleted), and a user named like a group."""
    with psycopg.connect(db.url, autocommit=True) as c:
        c.execute(
            """insert into public.role (id, foreign_id, name, email, type, deleted_at, is_blocked, is_admin, is_muted, is_tester)
               values (1, 'oidc:alice', 'Alice', 'alice@example.org', 'user', null, false, false, false, false),
                      (2, 'oidc:mallory', 'Mallory', null, 'user', null, true, false, false, false),
                      (3, 'oidc:gone', 'Gone', null, 'user', '2024-01-01', false, false, false, false),
                      (11, 'group:research', 'research', null, 'group', null, false, false, false, false),
                      (12, 'group:retired', 'retired', null, 'group', '2024-01-01', false, false, false, false),
                      (13, 'manual:auditors', 'auditors', null, 'group', null, false, false, false, false)"""
        )
        c.execute("select setval('public.role_id_seq', 1000)")
    return db


KINDS = ["psycopg2", "psycopg", "sqlalchemy-connection", "sqlalchemy-session"]


@pytest.fixture(params=KINDS)
def conn(request, seeded) -> Iterator[Any]:
    """A connection of each kind the client takes, in a transaction rolled back at the end."""
    kind = request.param
    if kind == "psycopg2":
        c = psycopg2.connect(seeded.url)
        yield c
        c.rollback()
        c.close()
    elif kind == "psycopg":
        c3 = psycopg.connect(seeded.url)
        yield c3
        c3.rollback()
        c3.close()
    else:
        engine = create_engine(_sa_url(seeded.url, "psycopg2" if kind.endswith("connection") else "psycopg"))
        if kind.endswith("connection"):
            with engine.connect() as sac:
                yield sac
                sac.rollback()
        else:
            with Session(engine) as session:
                yield session
                session.rollback()
        engine.dispose()


def test_sync_role_memberships(conn):
    assert rolesync.sync_role_memberships(conn, 1, [11, 13, 11]) == rolesync.SyncResult(added=[11, 13], removed=[])
    assert rolesync.sync_role_memberships(conn, 1, [13]) == rolesync.SyncResult(added=[], removed=[11])
    assert rolesync.sync_role_memberships(conn, 1, [11], managed_prefix="group:") == rolesync.SyncResult(added=[11], removed=[])
    assert rolesync.sync_role_memberships(conn, 1, []) == rolesync.SyncResult(added=[], removed=[11, 13])


def test_sync_role_memberships_by_foreign_id(conn):
    result = rolesync.sync_role_memberships_by_foreign_id(conn, "oidc:alice", ["group:research", "group:new", "group:retired"])
    assert isinstance(result, rolesync.SyncByForeignIdResult)
    assert result.added == [11, result.created[0]] and len(result.created) == 1 and result.removed == []
    assert result.skipped == [12]


def test_sync_oauth_login(conn):
    first = rolesync.sync_oauth_login(conn, "oidc:bob", "Bob", "bob@example.org", ["group:research"])
    assert first.member_created and first.added == [11] and first.member_id > 1000
    again = rolesync.sync_oauth_login(conn, "oidc:bob", "Bob", "bob@example.org", ["group:research"])
    assert again == rolesync.OAuthLoginResult(first.member_id, False, [], [], [], [])


def test_sync_aleph_login(conn):
    first = rolesync.sync_aleph_login(
        conn, "oidc:carol", "Carol", "carol@example.org", ["group:research", "group:fresh"], admin_group=True
    )
    assert isinstance(first, rolesync.AlephLoginResult)
    assert (first.member_created, first.is_admin) == (True, True)
    assert (first.added, first.removed, first.created, first.skipped) == (
        ["group:fresh", "group:research"], [], ["group:fresh"], [],
    )
    again = rolesync.sync_aleph_login(conn, "oidc:carol", "Carol", None, [], admin_rule="recompute", touch="on_change")
    assert (again.member_created, again.is_admin, again.removed) == (False, False, ["group:fresh", "group:research"])


def _raises(conn: Any, fn: Callable[[], Any], cls: type) -> errors.RolesyncError:
    """Runs fn, expects cls, and rolls back the failed transaction."""
    with pytest.raises(cls) as caught:
        fn()
    conn.rollback()
    return caught.value


def test_each_rolesync_sqlstate_is_its_typed_error(conn):
    """Every code the functions raise on bad input comes back as the class src/sqlstates.ts names."""
    cases = [
        ("22004", lambda: rolesync.sync_role_memberships(conn, 1, [None]), errors.NullArgumentError),
        ("22023", lambda: rolesync.sync_aleph_login(conn, "oidc:x", "x", None, [], touch="sometimes"), errors.InvalidArgumentError),
        ("RS001", lambda: rolesync.sync_role_memberships(conn, 3, []), errors.UnknownMemberError),
        ("RS001", lambda: rolesync.sync_aleph_login(conn, "oidc:gone", "G", None, []), errors.UnknownMemberError),
        ("RS002", lambda: rolesync.sync_role_memberships(conn, 1, [999]), errors.UnknownGroupError),
        ("RS003", lambda: rolesync.sync_role_memberships(conn, 1, [2]), errors.NotAGroupError),
        ("RS004", lambda: rolesync.sync_role_memberships_by_foreign_id(conn, "oidc:alice", ["oidc:alice"], ""), errors.SelfMembershipError),
        ("RS005", lambda: rolesync.sync_role_memberships(conn, 1, [13], managed_prefix="group:"), errors.UnmanagedGroupError),
        ("RS006", lambda: rolesync.sync_aleph_login(conn, "oidc:mallory", "M", None, []), errors.BlockedMemberError),
        ("22001", lambda: rolesync.sync_oauth_login(conn, "oidc:" + "x" * 2100, "x", None, []), errors.InvalidArgumentError),
    ]
    for code, fn, cls in cases:
        err = _raises(conn, fn, cls)
        assert err.sqlstate == code, (code, err)
        assert err.message and (code.startswith("22") or err.hint), err
        assert isinstance(err, errors.RolesyncError)


def test_the_table_maps_every_code_to_its_class_or_passes_it_through():
    """_sqlstates.py, generated from src/sqlstates.ts, names a class this package defines, or none."""
    assert len(SQLSTATES) >= 20
    for code, (name, todo) in SQLSTATES.items():
        cls = errors.error_class(code)
        assert (cls.__name__ if cls else None) == name, code
        assert todo
    assert errors.error_class("99999") is None
    assert errors.error_class("40P01") is errors.SerializationError


def test_other_sqlstates_pass_through_as_the_driver_raised_them(db):
    """42501 (no EXECUTE) and 57014 (statement timeout) are not rolesync's: the driver's own error comes back."""
    with psycopg.connect(db.url, autocommit=True) as admin:
        admin.execute(
            "do $$ begin if not exists (select from pg_roles where rolname = 'rolesync_py_nobody') then "
            "create role rolesync_py_nobody; end if; end $$"
        )
    c = psycopg.connect(db.url)
    rolesync.sync_oauth_login(c, "oidc:probe", "P", None, [])  # works, and the function is known on this connection
    rolesync.sync_aleph_login(c, "oidc:probe", "P", None, [])
    c.rollback()
    c.execute("set role rolesync_py_nobody")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        rolesync.sync_oauth_login(c, "oidc:probe", "P", None, [])
    c.rollback()
    c.execute("set statement_timeout = '1ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        rolesync.sync_aleph_login(c, "oidc:slow", "S", None, ["group:%d" % i for i in range(5000)])
    c.rollback()
    c.close()


def test_not_installed_and_outdated_are_told_apart(make_database):
    bare = make_database("aleph41")
    with psycopg.connect(bare.url) as c:
        with pytest.raises(errors.NotInstalledError) as caught:
            rolesync.sync_role_memberships(c, 1, [])
        assert not isinstance(caught.value, errors.OutdatedError)
        assert "rolesync is not installed in this database: run `rolesync migrate`" in str(caught.value)
        assert c.info.transaction_status != psycopg.pq.TransactionStatus.INERROR  # the probe is a plain read
    older = make_database("aleph41", rolesync=True)
    with psycopg.connect(older.url, autocommit=True) as admin:
        admin.execute(
            "drop function public.sync_aleph_login(text, text, text, text[], boolean, boolean, boolean, text, boolean, text, text, text[], text)"
        )
    with psycopg2.connect(older.url) as c2:
        with pytest.raises(errors.OutdatedError) as old:
            rolesync.sync_aleph_login(c2, "oidc:x", "x", None, [])
        assert "this rolesync is older than the client" in str(old.value) and "rolesync migrate" in (old.value.hint or "")
        # The other functions still work on that connection.
        c2.rollback()
        assert rolesync.sync_oauth_login(c2, "oidc:still-works", "S", None, []).member_created
    # Dropped after a first successful call on the connection: still a clear error, not a raw 42883.
    fine = make_database("aleph41", rolesync=True)
    with psycopg.connect(fine.url) as c3:
        with pytest.raises(errors.UnknownMemberError):
            rolesync.sync_role_memberships(c3, 1, [])
        c3.rollback()
        with psycopg.connect(fine.url, autocommit=True) as admin:
            admin.execute("drop function public.sync_role_memberships(integer, integer[], text) cascade")
        with pytest.raises(errors.NotInstalledError):
            rolesync.sync_role_memberships(c3, 1, [])


def test_run_in_transaction_retries_a_real_40001(seeded):
    """Two REPEATABLE READ transactions sync one member: the second's snapshot predates the first's commit."""
    first = psycopg2.connect(seeded.url)
    second = psycopg2.connect(seeded.url)
    for c in (first, second):
        c.set_session(isolation_level="REPEATABLE READ")
    calls: List[int] = []
    retries: List[str] = []
    go = threading.Event()

    def work(c: Any) -> rolesync.SyncResult:
        calls.append(1)
        c.cursor().execute("select 1")  # the snapshot
        if len(calls) == 1:
            go.set()
            first_done.wait(10)
        return rolesync.sync_role_memberships(c, 1, [13])

    first_done = threading.Event()

    def other() -> None:
        go.wait(10)
        rolesync.run_in_transaction(first, lambda c: rolesync.sync_role_memberships(c, 1, [11]))
        first_done.set()

    t = threading.Thread(target=other)
    t.start()
    result = rolesync.run_in_transaction(second, work, on_retry=lambda n, e: retries.append(type(e).__name__))
    t.join()
    assert retries == ["SerializationError"]
    assert result == rolesync.SyncResult(added=[13], removed=[11])
    assert len(calls) == 2
    for c in (first, second):
        c.close()


def test_run_in_transaction_does_not_retry_input_errors(seeded):
    c = psycopg.connect(seeded.url)
    calls: List[int] = []

    def bad(conn: Any) -> Any:
        calls.append(1)
        return rolesync.sync_role_memberships(conn, 1, [999])

    with pytest.raises(errors.UnknownGroupError):
        rolesync.run_in_transaction(c, bad)
    assert calls == [1]
    c.close()


def test_python_39_syntax():
    """Aleph 4.1.6's image runs Python 3.9: every module of the package parses as 3.9."""
    files = sorted(SRC.rglob("*.py"))
    assert files
    for f in files:
        ast.parse(f.read_text(), filename=str(f), feature_version=(3, 9))


def test_typed_package():
    assert (SRC / "py.typed").exists()
    assert rolesync.__version__
