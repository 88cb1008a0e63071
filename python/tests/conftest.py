"""Fixtures of rolesync's Python tests: the Aleph stand-in and fresh PostgreSQL databases.

ROLESYNC_STANDIN (`aleph41`, the default, or `openaleph53`) chooses which
stand-in this process imports as `aleph`; it is put first on sys.path here,
and the concurrency runner does the same in every worker process.
ROLESYNC_TEST_ADMIN_URL is a superuser URL; every database a test makes is
created beside it and dropped when the test ends, passed or failed.
"""
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from support import db as databases  # noqa: E402
from support import standin  # noqa: E402

LINE = standin.activate()

MakeDatabase = Callable[..., databases.TestDatabase]


def pytest_report_header(config: pytest.Config) -> str:
    return "rolesync stand-in: %s (%s)" % (LINE, standin.folder(LINE))


@pytest.fixture(scope="session")
def standin_line() -> str:
    """The stand-in this run imports as `aleph`: "aleph41" or "openaleph53"."""
    return LINE


@pytest.fixture(scope="session")
def admin_url() -> str:
    return databases.admin_url()


@pytest.fixture
def make_database(admin_url: str) -> Iterator[MakeDatabase]:
    """make(schema=None, rolesync=False): a fresh database, dropped after the test.

    schema: one of support.db.SCHEMAS ("aleph41", "aleph40", "openaleph53");
    rolesync: run `rolesync migrate` on it too, as an operator does.
    """
    made: List[databases.TestDatabase] = []

    def make(schema: Optional[str] = None, rolesync: bool = False) -> databases.TestDatabase:
        database = databases.new_database(schema, rolesync)
        made.append(database)
        return database

    try:
        yield make
    finally:
        for database in made:
            database.drop()


@pytest.fixture
def line_database(make_database: MakeDatabase, standin_line: str) -> databases.TestDatabase:
    """A fresh database with the schema of the stand-in's line, without rolesync."""
    return make_database(databases.SCHEMA_OF_LINE[standin_line])


@pytest.fixture
def rolesync_database(make_database: MakeDatabase, standin_line: str) -> databases.TestDatabase:
    """A fresh database with the schema of the stand-in's line and rolesync migrated into it."""
    return make_database(databases.SCHEMA_OF_LINE[standin_line], rolesync=True)
