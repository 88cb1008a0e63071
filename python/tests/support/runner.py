"""Concurrent logins through a stand-in's whole OAuth callback.

N workers (default 8), as threads in P spawned OS processes (default 2, so
2 x 4 threads), run R rounds (default 25). Each worker runs the stand-in's
`oauth_callback` in a fresh Flask app context of an app made by the
stand-in's `create_app` (so `aleph.init` entry points load, as in Aleph):
`handle_oauth`, the callback's own writes and its commit, as one request
would. Before each round the parent puts the database in the case's starting
state and records the memberships; after it, it reads them again.

How a round starts: each worker enters its app context and checks its
session's connection out of the pool (OpenAleph keeps one pooled connection
per process, so the others are opened here, not in the race), then waits at a
barrier; the parent sets a start time a little ahead (`margin`) and releases
them; each sleeps until that time and calls the callback. (Checking the
connection out begins the session's transaction a little early; at READ
COMMITTED nothing reads a snapshot before the first statement.) A
multiprocessing barrier wakes its waiters one after another, up to 20 ms
apart on a busy 2-core machine, which is longer than the races last; the
shared start time takes that out. Each outcome records how late its callback
actually started (`lag`: mostly the GIL, a few ms).

Which login committed last: writes to one row are serialized by its row
lock, so the version of a user's `role` row that survives a round was written
by the last login to commit among those that wrote it, and its `xmin` is that
login's transaction id. Each worker records its own transaction id
(`txid_current_if_assigned()`, read by a hook on the engine's commit event,
right before the COMMIT and after every write: one read at commit, no lock,
nothing in the login itself). After the round, the parent matches `role.xmin` to the
successful logins and expects the user's memberships to be exactly the groups
of that login's token. In Aleph every successful login writes the row (the
callback's `last_login_at`); in OpenAleph a login writes it when it changes
anything of the user (`clear_roles` and `update_name` touch it), so a login
that wrote nothing changed nothing. A round where no login succeeded must
leave the memberships as they were; a round where no successful login wrote
the row is judged by the successful logins' common token, and counts as
undetermined (and wrong) when their tokens differ.

Workers inherit the parent's environment without its ALEPH_* and
OPENALEPH_* variables; what the run needs is passed in `env`.
"""
import collections
import importlib
import multiprocessing
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psycopg

from support import standin
from support.cases import Case, Login, Seeder

XID_MODULO = 2**32


@dataclass
class Outcome:
    round: int
    worker: int
    status: int
    kind: str  # "ok", or the kind of failure (see classify)
    detail: str = ""
    xid: Optional[int] = None
    role_id: Optional[int] = None
    lag: float = 0.0  # how late this callback started after the round's start time, in seconds

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


@dataclass
class RoundCheck:
    round: int
    duplicate_pairs: int  # (group_id, member_id) pairs stored more than once after the round
    memberships_ok: bool  # every user's memberships are those of its last committed login
    determined: bool  # the last committed login could be identified (or nothing had changed)
    identified: int = 0  # users whose last committed login was found by the xmin of their role row
    wrong: List[str] = field(default_factory=list)


@dataclass
class RunResult:
    case: str
    rounds: int
    workers: int
    processes: int
    seconds: float
    outcomes: List[Outcome]
    checks: List[RoundCheck]
    extensions: List[str] = field(default_factory=list)  # the `aleph.init` plugins the workers loaded

    @property
    def logins(self) -> int:
        return len(self.outcomes)

    @property
    def failures(self) -> "collections.Counter[str]":
        return collections.Counter(o.kind for o in self.outcomes if not o.ok)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def count(self, prefix: str) -> int:
        """Failed logins whose kind starts with `prefix` ("StaleDataError", "unique", "deadlock", "other", ...)."""
        return sum(n for kind, n in self.failures.items() if kind.startswith(prefix))

    @property
    def stale(self) -> int:
        return self.count("StaleDataError")

    @property
    def unique(self) -> int:
        return self.count("unique")

    @property
    def deadlocks(self) -> int:
        return self.count("deadlock")

    @property
    def other(self) -> int:
        return self.failed - self.stale - self.unique - self.deadlocks

    @property
    def duplicate_rounds(self) -> int:
        return sum(1 for check in self.checks if check.duplicate_pairs)

    @property
    def memberships_right(self) -> bool:
        return all(check.memberships_ok for check in self.checks)

    @property
    def wrong_rounds(self) -> int:
        return sum(1 for check in self.checks if not check.memberships_ok)

    def lag_ms(self, share: float = 1.0) -> float:
        """How late the callbacks started after their round's start time, in ms: the given quantile (1.0: the max).

        A few ms is the GIL; much more means the machine was busy with something else,
        which spreads the start and makes the races rarer.
        """
        lags = sorted(o.lag for o in self.outcomes)
        if not lags:
            return 0.0
        return 1000.0 * lags[min(len(lags) - 1, int(share * len(lags)))]

    def kinds(self) -> str:
        return ", ".join("%d %s" % (n, kind) for kind, n in self.failures.most_common()) or "-"

    def summary(self) -> str:
        return (
            "%d/%d failed (%s); duplicates in %d round(s); memberships wrong in %d round(s); "
            "start lag p90 %.1f ms, max %.1f ms; %.1f s"
            % (
                self.failed,
                self.logins,
                self.kinds(),
                self.duplicate_rounds,
                self.wrong_rounds,
                self.lag_ms(0.9),
                self.lag_ms(),
                self.seconds,
            )
        )


def classify(result: Any) -> Tuple[str, str]:
    """The kind of a callback's outcome, and a one-line detail."""
    from sqlalchemy.orm.exc import StaleDataError

    if result.status == 200:
        return "ok", ""
    error = result.error
    if result.status in (401, 403):
        return "refused:%d" % result.status, type(error).__name__ if error is not None else ""
    detail = ("%s: %s" % (type(error).__name__, error)).splitlines()[0][:300]
    if isinstance(error, StaleDataError):
        return "StaleDataError", detail
    orig = getattr(error, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    if code == "23505":
        constraint = getattr(getattr(orig, "diag", None), "constraint_name", None)
        return "unique:%s" % constraint, detail
    if code == "40P01":
        return "deadlock", detail
    return "other:%s%s" % (type(error).__name__, "(%s)" % code if code else ""), detail


# --- the worker processes -------------------------------------------------------------------------

_xid = threading.local()


def _record_xid(conn: Any) -> None:
    """Engine commit hook: the transaction's id, if it wrote anything; read after its last write."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute("select txid_current_if_assigned()")
        row = cursor.fetchone()
        _xid.value = int(row[0]) if row and row[0] is not None else None
    finally:
        cursor.close()


@dataclass
class _ProcessSpec:
    index: int
    line: str
    env: Dict[str, str]
    workers: List[int]  # the worker indexes this process runs, one thread each
    plan: List[List[Dict[str, Any]]]  # plan[round][worker]: the claims of that worker's token
    setup: Optional[str]  # "module:function", called with the app in each process
    timeout: float
    margin: float


def _resolve(name: str) -> Any:
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _sleep_until(moment: float) -> float:
    """Sleeps until time.monotonic() reaches `moment`; returns how late it woke, in seconds."""
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return time.monotonic() - moment


def _process_main(spec: _ProcessSpec, ready: Any, release: Any, go_at: Any, outbox: Any) -> None:
    try:
        for key in [k for k in os.environ if k.startswith(("ALEPH_", "OPENALEPH_"))]:
            del os.environ[key]
        os.environ.update(spec.env)
        standin.activate(spec.line)
        from sqlalchemy import event

        from aleph.core import create_app, db, get_extensions
        from aleph.oauth import make_oauth_token, provider
        sessions_api = importlib.import_module("aleph.views.sessions_api")  # the module; aleph.views.sessions_api is the blueprint

        app = create_app()
        if spec.setup:
            _resolve(spec.setup)(app)
        with app.app_context():
            event.listen(db.engine, "commit", _record_xid)
    except BaseException:
        outbox.put(("error", spec.index, traceback.format_exc()))
        ready.abort()
        release.abort()
        return

    def run(worker: int) -> None:
        try:
            for round, tokens in enumerate(spec.plan):
                with app.app_context():
                    db.session.connection()  # the request's connection, in hand before the start
                    ready.wait(spec.timeout)
                    release.wait(spec.timeout)
                    lag = _sleep_until(go_at.value)
                    _xid.value = None
                    result = sessions_api.oauth_callback(provider, make_oauth_token(tokens[worker]))
                kind, detail = classify(result)
                outcome = Outcome(round, worker, result.status, kind, detail, _xid.value, result.role_id, lag)
                outbox.put(("outcome", spec.index, outcome))
        except BaseException:
            outbox.put(("error", spec.index, "worker %d: %s" % (worker, traceback.format_exc())))
            ready.abort()
            release.abort()

    plugins = ["%s:%s" % (p.__module__, getattr(p, "__qualname__", p)) for p in get_extensions("aleph.init")]
    outbox.put(("ready", spec.index, plugins))
    threads = [threading.Thread(target=run, args=(worker,)) for worker in spec.workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- the parent ------------------------------------------------------------------------------------


class RunnerError(RuntimeError):
    pass


def _receive(outbox: Any, timeout: float) -> Tuple[str, int, Any]:
    try:
        kind, index, payload = outbox.get(timeout=timeout)
    except queue.Empty:
        raise RunnerError("no word from the workers in %.0f s" % timeout) from None
    if kind == "error":
        raise RunnerError("worker process %d failed:\n%s" % (index, payload))
    return kind, index, payload


def _memberships(conn: psycopg.Connection, foreign_id: str) -> Tuple[Optional[List[str]], Optional[int]]:
    """The user's group foreign ids (sorted, duplicates kept) and its row's xmin; (None, None) when absent."""
    row = conn.execute(
        """select r.xmin::text::bigint,
                  coalesce(array_agg(g.foreign_id order by g.foreign_id) filter (where m.group_id is not null), '{}')
             from public.role r
             left join public.role_membership m on m.member_id = r.id
             left join public.role g on g.id = m.group_id
            where r.foreign_id = %s
            group by r.id""",
        [foreign_id],
    ).fetchone()
    if row is None:
        return None, None
    return list(row[1]), int(row[0])


def _duplicate_pairs(conn: psycopg.Connection) -> int:
    row = conn.execute(
        """select count(*) from (select 1 from public.role_membership
                                 group by group_id, member_id having count(*) > 1) d"""
    ).fetchone()
    return int(row[0]) if row else 0


def _check_round(
    conn: psycopg.Connection,
    round: int,
    logins: Sequence[Login],
    outcomes: Sequence[Outcome],
    before: Dict[str, Optional[List[str]]],
    handler: str,
    admin_group: str,
) -> RoundCheck:
    check = RoundCheck(round, _duplicate_pairs(conn), True, True)
    for foreign_id in sorted(before):
        actual, xmin = _memberships(conn, foreign_id)
        mine = [o for o in outcomes if logins[o.worker].foreign_id(handler) == foreign_id and o.ok]
        expected: Optional[List[str]]
        if not mine:
            expected = before[foreign_id]
        else:
            last = [o for o in mine if o.xid is not None and xmin is not None and o.xid % XID_MODULO == xmin]
            check.identified += bool(last)
            tokens = {tuple(logins[o.worker].group_foreign_ids(admin_group)) for o in (last or mine)}
            if len(tokens) != 1:
                check.determined = False
                check.memberships_ok = False
                check.wrong.append("%s: the last committed login is unknown" % foreign_id)
                continue
            expected = list(tokens.pop())
        if actual != expected:
            check.memberships_ok = False
            check.wrong.append("%s: expected %s, found %s" % (foreign_id, expected, actual))
    return check


def run_case(
    case: Case,
    db_url: str,
    *,
    line: Optional[str] = None,
    rounds: int = 25,
    workers: int = 8,
    processes: int = 2,
    env: Optional[Dict[str, str]] = None,
    worker_setup: Optional[str] = None,
    timeout: float = 120.0,
    margin: float = 0.05,
    process_env: Optional[Sequence[Dict[str, str]]] = None,
) -> RunResult:
    """Runs `case` on the database at `db_url` (Aleph's schema in it) and counts what happened.

    env: extra environment of the workers (e.g. {"ROLESYNC_ALEPH": "off",
    "ALEPH_OAUTH_MIGRATE_SUB": "false"}), over the case's own and the database URI.
    worker_setup: "module:function" called as function(app) in each worker
    process once its app exists (e.g. "support.patches:apply_section7").
    margin: how far ahead of the release the round's start time is set, in
    seconds (it must exceed the time the release barrier takes to wake everyone).
    process_env: per process, more environment over `env` (e.g. a rolling deploy:
    {"ROLESYNC_ALEPH": "on"} for one process, "off" for the other). Worker w runs
    in process w % processes.
    """
    if processes < 2 or workers < processes:
        raise ValueError("need at least 2 processes and a worker for each")
    line = line or standin.current_line()
    run_env = dict(case.env(rounds, workers))
    run_env.update({"ALEPH_DATABASE_URI": db_url, "OPENALEPH_DB_URI": db_url})
    run_env.update(env or {})
    handler = run_env.get("ALEPH_OAUTH_HANDLER", "oidc")
    admin_group = run_env.get("ALEPH_OAUTH_ADMIN_GROUP", "superuser")

    plan_logins = [case.logins(round, workers) for round in range(rounds)]
    plan = [[login.claims() for login in logins] for logins in plan_logins]
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(workers + 1)
    release = ctx.Barrier(workers + 1)
    go_at = ctx.Value("d", 0.0, lock=False)
    outbox = ctx.Queue()
    per_process = [list(range(workers))[p::processes] for p in range(processes)]
    children = [
        ctx.Process(
            target=_process_main,
            args=(
                _ProcessSpec(p, line, dict(run_env, **(process_env[p] if process_env else {})), per_process[p], plan,
                             worker_setup, timeout, margin),
                ready,
                release,
                go_at,
                outbox,
            ),
            name="rolesync-login-%d" % p,
            daemon=True,
        )
        for p in range(processes)
    ]

    began = time.monotonic()
    extensions: List[str] = []
    outcomes: List[Outcome] = []
    checks: List[RoundCheck] = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed = Seeder(conn, line, handler)
        case.setup(seed)
        for child in children:
            child.start()
        try:
            started = 0
            while started < processes:
                kind, _, payload = _receive(outbox, timeout)
                if kind == "ready":
                    started += 1
                    extensions = payload
            for round in range(rounds):
                case.reset(seed, round, workers)
                users = {login.foreign_id(handler) for login in plan_logins[round]}
                before = {foreign_id: _memberships(conn, foreign_id)[0] for foreign_id in users}
                try:
                    ready.wait(timeout)
                    go_at.value = time.monotonic() + margin
                    release.wait(timeout)
                except threading.BrokenBarrierError:
                    _receive(outbox, 5.0)  # raises the worker's error, if it sent one
                    raise RunnerError("round %d: a worker did not arrive" % round) from None
                mine: List[Outcome] = []
                while len(mine) < workers:
                    kind, _, payload = _receive(outbox, timeout)
                    if kind == "outcome":
                        mine.append(payload)
                outcomes.extend(mine)
                checks.append(_check_round(conn, round, plan_logins[round], mine, before, handler, admin_group))
            for child in children:
                child.join(timeout)
        finally:
            for child in children:
                if child.is_alive():
                    child.terminate()
                    child.join(5)
    return RunResult(case.key, rounds, workers, processes, time.monotonic() - began, outcomes, checks, extensions)
