"""Calibration: the stand-in of the chosen line must fail where Aleph's own code fails.

A stand-in that never fails proves nothing about a fix. These runs use the
stand-in chosen by ROLESYNC_STANDIN on a database where rolesync is migrated
but the login is unchanged (the plugin's entry point loads, switched off with
ROLESYNC_ALEPH=off), 8 concurrent callbacks x 25 rounds per case, and check
the stand-in against what Aleph's real code measured (aleph-login.md):

- "token differs": at least 150 of 200 logins fail with StaleDataError, in both lines;
- Aleph 4.1.6 with the one-call patch of docs/aleph.md section 7: the first
  login of a new user deadlocks (40P01) at least once with OAUTH_MIGRATE_SUB on
  (the real code: 27 to 66 in 200), and never fails with it off.

The two asserted failures need more than one 8 x 25 run on a small machine
(2 cores), so those runs have more rounds, with the same threshold:

- OpenAleph's "token differs" fails about 160 of 200 here, as the real code
  did (159 with rolesync, 166 without), but single 25-round runs ranged from
  145 to 169, and 100-round runs from 621 to 672 of 800. It runs 200 rounds
  and at least 75% of its 1600 logins must fail, as 150 of 200 (measured: 1265 to
  1285 of 1600). Aleph's (173 to 175 of 200 in every run) runs the same way.
- The section-7 deadlock needs a login that is slowed down between its two
  look-ups (by foreign id, then by e-mail) just while the first login
  commits. Single 25-round runs showed 0, 0, 5, 5, 6 and 11 deadlocks in 200;
  100-round runs 27 to 94 in 800. Both section-7 runs (MIGRATE_SUB on, and off
  as the control) run 100 rounds.

These are races: they need a quiet machine. Other CPU load on a 2-core
machine spreads the start of the 8 callbacks and lets more of them miss the
race; runs beside another heavy test session gave OpenAleph 1089 and 1093 of
1600 (their durations 27 and 34 s instead of 21 s). So "token differs" runs
a second time when the first falls short, and the table shows both, with each
run's start lag (p90, normally a few ms) and duration.

`pytest -s` prints every run's counts, and a table of them at the end.
"""
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from support import cases, standin
from support.db import SCHEMA_OF_LINE
from support.patches import SECTION7
from support.runner import RunResult, run_case

LINE = standin.current_line()
ROUNDS = 25
STALE_ROUNDS = 200  # "token differs" (see above)
DEADLOCK_ROUNDS = 100  # the section-7 runs (see above)
WORKERS = 8
PLUGIN_OFF = {"ROLESYNC_ALEPH": "off"}
MIGRATE_SUB_OFF = {"ALEPH_OAUTH_MIGRATE_SUB": "false"}

Row = Tuple[str, str, RunResult]


def _format(rows: List[Row]) -> str:
    head = "%-28s %-38s %9s %6s %6s %8s %5s %8s %5s %7s %5s" % (
        "login", "case", "failed", "stale", "unique", "deadlock", "other", "dup-rnds", "wrong", "lag-p90", "secs")
    lines = ["", "calibration of the %s stand-in: %d concurrent callbacks a round, rolesync migrated, "
             "ROLESYNC_ALEPH=off" % (LINE, WORKERS), head, "-" * len(head)]
    for label, title, r in rows:
        lines.append("%-28s %-38s %9s %6d %6d %8d %5d %8d %5d %5.1fms %5.1f" % (
            label, title, "%d/%d" % (r.failed, r.logins), r.stale, r.unique, r.deadlocks, r.other,
            r.duplicate_rounds, r.wrong_rounds, r.lag_ms(0.9), r.seconds))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def table() -> Iterator[List[Row]]:
    rows: List[Row] = []
    yield rows
    print(_format(rows))


def _run(make_database, table: List[Row], case: cases.Case, label: str, rounds: int = ROUNDS,
         env: Optional[Dict[str, str]] = None, setup: Optional[str] = None) -> RunResult:
    database = make_database(SCHEMA_OF_LINE[LINE], rolesync=True)
    result = run_case(case, database.url, rounds=rounds, workers=WORKERS, processes=2,
                      env=dict(PLUGIN_OFF, **(env or {})), worker_setup=setup)
    # The plugin is installed, so the workers' create_app loads it (and ROLESYNC_ALEPH=off keeps it off).
    assert any(name.startswith("rolesync.") for name in result.extensions), result.extensions
    table.append((label, case.title, result))
    print("\n[%s] %s, %s: %s; plugins loaded: %s"
          % (LINE, label, case.title, result.summary(), ", ".join(result.extensions) or "none"))
    for check in result.checks:
        for wrong in check.wrong:
            print("  round %d: %s" % (check.round, wrong))
    return result


@pytest.mark.parametrize("case", cases.ALL, ids=lambda case: case.key)
def test_login_unchanged(make_database, table: List[Row], case: cases.Case) -> None:
    rounds = STALE_ROUNDS if case is cases.TOKEN_DIFFERS else ROUNDS
    result = _run(make_database, table, case, "unchanged", rounds=rounds)
    if case is cases.TOKEN_DIFFERS and result.stale * 200 < 150 * result.logins:
        # Other load on the 2 cores spreads the 8 callbacks' start and lets some miss the race
        # (1089 and 1093 of 1600 beside a second heavy session): one more run, reported too.
        result = _run(make_database, table, case, "unchanged, second run", rounds=rounds)
    assert result.logins == rounds * WORKERS
    # rolesync keys role_membership in both lines: no pair is ever stored twice, and once
    # concurrent logins settle the memberships are those of the last one to commit.
    assert result.duplicate_rounds == 0, result.summary()
    assert result.memberships_right, result.summary()
    if case is cases.TOKEN_EQUALS:
        assert result.failed == 0, result.summary()
    if case is cases.TOKEN_DIFFERS:
        # At least 150 of 200, as a share of the longer run: 75%.
        assert result.stale * 200 >= 150 * result.logins, result.summary()


if LINE == standin.ALEPH41:

    def test_section7_first_login_deadlocks_with_migrate_sub(make_database, table: List[Row]) -> None:
        result = _run(make_database, table, cases.FIRST_LOGIN, "section 7, MIGRATE_SUB on",
                      rounds=DEADLOCK_ROUNDS, setup=SECTION7)
        assert result.deadlocks >= 1, result.summary()
        assert result.failed == result.deadlocks, result.summary()
        assert result.memberships_right, result.summary()

    def test_section7_first_login_without_migrate_sub(make_database, table: List[Row]) -> None:
        result = _run(make_database, table, cases.FIRST_LOGIN, "section 7, MIGRATE_SUB off",
                      rounds=DEADLOCK_ROUNDS, env=MIGRATE_SUB_OFF, setup=SECTION7)
        assert result.failed == 0, result.summary()
        assert result.memberships_right, result.summary()
