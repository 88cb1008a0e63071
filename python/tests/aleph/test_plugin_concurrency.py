"""The plugin under concurrent logins, through the stand-in's whole OAuth callback.

Every case of aleph-login.md's tables, for the line ROLESYNC_STANDIN names: 8 callbacks at once in
2 OS processes (4 threads each: a lock held in Python could not serialize them), 25 rounds, each
callback the whole of it: the plugin's login, the line's own write to role (Aleph's last_login_at),
and the commit. The plugin must fail no login, store no pair twice, and leave each user with the
groups of its last committed login. The same runs with the line's own code fail 150 to 175 of 200
(test_calibration.py), so the stand-in can fail.

Two more runs: the first logins that deadlocked the hand patch of the docs before 0.2.0 (100
rounds, OAUTH_MIGRATE_SUB on), and a rolling deploy, one process with the plugin and one without.
"""
from typing import Dict, Iterator, List, Tuple

import pytest

from support import cases, standin
from support.db import SCHEMA_OF_LINE
from support.runner import RunResult, run_case

LINE = standin.current_line()
WORKERS = 8
PROCESSES = 2
ROUNDS = 25
PLUGIN_ON = {"ROLESYNC_ALEPH": "on"}

Row = Tuple[str, RunResult]


@pytest.fixture(scope="module")
def table() -> Iterator[List[Row]]:
    rows: List[Row] = []
    yield rows
    print("\nthe plugin on the %s stand-in, %d callbacks a round in %d processes:" % (LINE, WORKERS, PROCESSES))
    for title, r in rows:
        print("  %-52s %s" % (title, r.summary()))


def _run(make_database, table: List[Row], case: cases.Case, title: str, rounds: int = ROUNDS, **kw: object) -> RunResult:
    database = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    result = run_case(case, database.url, rounds=rounds, workers=WORKERS, processes=PROCESSES, **kw)  # type: ignore[arg-type]
    assert any(name.startswith("rolesync.aleph") for name in result.extensions), result.extensions
    table.append((title, result))
    for check in result.checks:
        for wrong in check.wrong:
            print("  round %d: %s" % (check.round, wrong))
    return result


@pytest.mark.parametrize("case", cases.ALL, ids=lambda case: case.key)
def test_no_login_fails(make_database, table: List[Row], case: cases.Case) -> None:
    result = _run(make_database, table, case, case.title, env=PLUGIN_ON)
    assert result.logins == ROUNDS * WORKERS
    assert result.failed == 0, result.summary()
    assert result.duplicate_rounds == 0, result.summary()
    assert result.memberships_right, result.summary()


def test_first_logins_with_migrate_sub_never_deadlock(make_database, table: List[Row]) -> None:
    """Where the hand patch deadlocked (a write to role before the member lock): 100 rounds, OAUTH_MIGRATE_SUB on."""
    result = _run(make_database, table, cases.FIRST_LOGIN, "first logins, OAUTH_MIGRATE_SUB on, 100 rounds",
                  rounds=100, env=dict(PLUGIN_ON, ALEPH_OAUTH_MIGRATE_SUB="true"))
    assert result.failed == 0, result.summary()
    assert result.memberships_right, result.summary()


@pytest.mark.parametrize("case", [cases.TOKEN_DIFFERS, cases.FIRST_LOGIN], ids=lambda case: case.key)
def test_a_rolling_deploy_old_and_new_pods_together(make_database, table: List[Row], case: cases.Case) -> None:
    """One process with the plugin (a new pod), one with the line's own login (an old pod).

    The plugin's logins retry 40001 and 40P01 and never fail; the old pod's may fail as they do without
    rolesync's plugin. No pair is stored twice, and each round ends with the last committed login's groups.
    """
    result = _run(make_database, table, case, "rolling deploy: %s" % case.title,
                  process_env=[{"ROLESYNC_ALEPH": "on"}, {"ROLESYNC_ALEPH": "off"}])
    new = [o for o in result.outcomes if o.worker % PROCESSES == 0]
    assert len(new) == ROUNDS * WORKERS // PROCESSES
    assert [o for o in new if not o.ok] == [], result.summary()
    assert result.duplicate_rounds == 0, result.summary()
    assert result.memberships_right, result.summary()
