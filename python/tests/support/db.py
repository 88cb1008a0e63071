"""Test databases: a fresh one per test, Aleph's schemas as their Alembic chains leave them, rolesync installed.

ROLESYNC_TEST_ADMIN_URL is a superuser URL (e.g.
postgres://postgres@127.0.0.1:5432/postgres); each test database is created
beside it and dropped afterwards. The schemas are written here from the facts
of Aleph's and OpenAleph's migrations (the role and role_membership tables and
Alembic's version table only); they are not Aleph's code.
"""
import atexit
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

import psycopg

ADMIN_URL_ENV = "ROLESYNC_TEST_ADMIN_URL"
REPO = Path(__file__).resolve().parents[3]
DEFAULT_BIN = REPO / "dist" / "bin.js"

# Schema names, each with the Alembic revision it stands for.
ALEPH41 = "aleph41"  # Aleph 4.1.6 at head: role_membership keyed by role_membership_pkey
ALEPH40_KEYLESS = "aleph40"  # Aleph 4.0: last_login_at, no api_key_* columns, no key
OPENALEPH53 = "openaleph53"  # OpenAleph 5.3: no last_login_at, no api_key_digest, no key
REVISIONS: Dict[str, str] = {
    ALEPH41: "31e24765dee3",
    ALEPH40_KEYLESS: "8adf50aadcb0",
    OPENALEPH53: "575ded9400fd",
}

_ROLE_TYPE = "create type public.role_type as enum ('user', 'group', 'system');"

# role as Aleph's first revisions leave it (the 3.x table, which OpenAleph keeps).
_ROLE = """
create table public.role (
  id serial primary key,
  created_at timestamp without time zone,
  updated_at timestamp without time zone,
  deleted_at timestamp without time zone,
  foreign_id varchar(2048) not null,
  name varchar not null,
  email varchar,
  api_key varchar,
  is_admin boolean not null,
  is_muted boolean not null,
  type public.role_type not null,
  password_digest varchar,
  reset_token varchar,
  locale varchar,
  is_blocked boolean not null,
  is_tester boolean not null,
  constraint role_foreign_id_key unique (foreign_id)
);"""

_LAST_LOGIN = "alter table public.role add column last_login_at timestamp without time zone;"

_API_KEY_41 = """
alter table public.role add column api_key_expires_at timestamp without time zone;
alter table public.role add column api_key_expiration_notification_sent integer;
create index ix_role_api_key_expires_at on public.role (api_key_expires_at);
alter table public.role add column api_key_digest varchar;
create unique index ix_role_api_key_digest on public.role (api_key_digest);"""

_MEMBERSHIP = """
create table public.role_membership (
  group_id integer references public.role (id),
  member_id integer references public.role (id)
);"""

_MEMBERSHIP_KEY = (
    "alter table public.role_membership add constraint role_membership_pkey primary key (member_id, group_id);"
)

_ALEMBIC = """
create table public.alembic_version (
  version_num varchar(32) not null,
  constraint alembic_version_pkc primary key (version_num)
);"""

SCHEMAS: Dict[str, List[str]] = {
    ALEPH41: [_ROLE_TYPE, _ROLE, _MEMBERSHIP, _LAST_LOGIN, _MEMBERSHIP_KEY, _API_KEY_41, _ALEMBIC],
    ALEPH40_KEYLESS: [_ROLE_TYPE, _ROLE, _MEMBERSHIP, _LAST_LOGIN, _ALEMBIC],
    OPENALEPH53: [_ROLE_TYPE, _ROLE, _MEMBERSHIP, _ALEMBIC],
}

#: The schema each stand-in runs on.
SCHEMA_OF_LINE = {"aleph41": ALEPH41, "openaleph53": OPENALEPH53}


def admin_url() -> str:
    url = os.environ.get(ADMIN_URL_ENV, "").strip()
    if not url:
        raise RuntimeError(
            "%s is not set: give a superuser URL, e.g. postgres://postgres@127.0.0.1:5432/postgres" % ADMIN_URL_ENV
        )
    return url


def with_database(url: str, name: str) -> str:
    """The URL with its database replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@dataclass
class TestDatabase:
    __test__ = False  # not a pytest test class

    name: str
    url: str
    admin_url: str

    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=autocommit)

    def drop(self) -> None:
        drop_database(self.admin_url, self.name)


def create_database(prefix: str = "rolesync_py", url: Optional[str] = None, template: Optional[str] = None) -> TestDatabase:
    admin = url or admin_url()
    name = "%s_%d_%s" % (prefix, os.getpid(), uuid.uuid4().hex[:8])
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('create database "%s"%s' % (name, ' template "%s"' % template if template else ""))
    return TestDatabase(name=name, url=with_database(admin, name), admin_url=admin)


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        try:
            conn.execute('drop database if exists "%s" with (force)' % name)
        except psycopg.errors.SyntaxError:  # PostgreSQL before 13
            conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [name])
            conn.execute('drop database if exists "%s"' % name)


def build_schema(url: str, schema: str) -> None:
    """Creates Aleph's tables as the named Alembic state has them, and stamps alembic_version."""
    if schema not in SCHEMAS:
        raise ValueError("unknown schema %r; one of %s" % (schema, ", ".join(SCHEMAS)))
    with psycopg.connect(url) as conn:
        for statement in SCHEMAS[schema]:
            conn.execute(statement)
        conn.execute("insert into public.alembic_version (version_num) values (%s)", [REVISIONS[schema]])


def rolesync_bin() -> str:
    return os.environ.get("ROLESYNC_BIN") or str(DEFAULT_BIN)


def install_rolesync(url: str) -> str:
    """Runs `node $ROLESYNC_BIN migrate` on the database, as an operator does; returns its output."""
    binary = rolesync_bin()
    if not Path(binary).exists():
        raise RuntimeError("%s is missing: build the CLI first (cd %s && npm run -s build)" % (binary, REPO))
    env = dict(os.environ, DATABASE_URL=url)
    done = subprocess.run(
        ["node", binary, "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError("rolesync migrate failed (exit %d):\n%s" % (done.returncode, output))
    return output


# Each (schema, rolesync) built once per process, then cloned: `rolesync migrate` takes a second or
# more, CREATE DATABASE ... TEMPLATE a tenth of that. Dropped when the process ends.
_templates: Dict[Tuple[Optional[str], bool], TestDatabase] = {}


def _drop_templates() -> None:
    for template in _templates.values():
        try:
            template.drop()
        except Exception:  # the server may be gone already; the harness drops the rest with it
            pass
    _templates.clear()


atexit.register(_drop_templates)


def _build(schema: Optional[str], rolesync: bool, prefix: str) -> TestDatabase:
    db = create_database(prefix)
    try:
        if schema is not None:
            build_schema(db.url, schema)
        if rolesync:
            install_rolesync(db.url)
    except BaseException:
        db.drop()
        raise
    return db


def new_database(schema: Optional[str] = None, rolesync: bool = False, prefix: str = "rolesync_py") -> TestDatabase:
    """A fresh database, with Aleph's schema and rolesync when asked: a clone of one built once."""
    key = (schema, rolesync)
    if key not in _templates:
        _templates[key] = _build(schema, rolesync, prefix + "_tpl")
    return create_database(prefix, template=_templates[key].name)
