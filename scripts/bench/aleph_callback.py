"""The bench's whole-callback logins: Aleph 4.1's OAuth callback, with and without the rolesync plugin.

Runs the Aleph 4.1.6 stand-in of python/tests (our own replica of Aleph's login code: its Role
model, handle_oauth and callback, on Flask-SQLAlchemy and psycopg2, as Aleph runs them) in this
process: `create_app()`, then, in a fresh app context per login as one request has, the callback
with a token for a user and 5 groups. Two tokens: the groups the user has (nothing changes), and
one group swapped (a changed login; the next login swaps it back). Each login is timed, and the
statements it sends are counted (an executemany counts one per row: each is a round trip).

    python aleph_callback.py --admin-url URL --through HOST:PORT --connections 1 --seconds 5

builds its own database (the stand-in's schema at Alembic head, rolesync migrated by the CLI,
users in 5 groups) through --admin-url, runs the logins through --through (the bench's delaying
proxy; default: direct), drops the database, and prints one JSON object:
{"cells": [{"plugin": "on", "case": "noop", "connections": 1, "logins": ..., "seconds": ...,
"p50": ms, "p99": ms, "statements": per login, "errors": n}, ...]}.

Needs the harness's virtual environment (Flask, Flask-SQLAlchemy, SQLAlchemy, psycopg2, psycopg)
with the rolesync wheel, and ROLESYNC_BIN pointing at dist/bin.js.
"""
import argparse
import importlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import urlsplit, urlunsplit

TESTS = Path(__file__).resolve().parents[2] / "python" / "tests"
GROUPS = 5


def through(url: str, hostport: str) -> str:
    """`url` with its host and port replaced by `hostport` (the proxy)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit((parts.scheme, (userinfo + "@" if userinfo else "") + hostport, parts.path, parts.query, parts.fragment))


def pct(sorted_ms: List[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", required=True)
    parser.add_argument("--through", default="", help="host:port to connect through (the delaying proxy)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()

    sys.path.insert(0, str(TESTS))
    os.environ["ROLESYNC_TEST_ADMIN_URL"] = args.admin_url
    from support import standin
    from support.cases import Login, Seeder
    from support.db import ALEPH41, new_database

    standin.activate(standin.ALEPH41)
    db = new_database(ALEPH41, rolesync=True, prefix="rolesync_bench_callback")
    cells: List[Dict[str, Any]] = []
    try:
        import psycopg

        group_names = ["team-%d" % g for g in range(GROUPS + 1)]
        users = [Login("u%d" % u, "u%d@example.org" % u, "User %d" % u, tuple(group_names[:GROUPS])) for u in range(args.users)]
        def reset() -> None:
            # Every user in its 5 groups, before each cell: a changed cell leaves some swapped.
            with psycopg.connect(db.url, autocommit=True) as conn:
                seed = Seeder(conn, ALEPH41)
                for login in users:
                    seed.memberships(login, login.groups)
                seed.group(group_names[GROUPS])
                conn.execute("vacuum analyze")

        url = through(db.url, args.through) if args.through else db.url
        for plugin in ("off", "on"):
            for case in ("noop", "changed"):
                for connections in args.connections:
                    reset()
                    cells.append(run(url, plugin, case, connections, args.seconds, users, group_names))
    finally:
        db.drop()
    print(json.dumps({"cells": cells}))


def run(url: str, plugin: str, case: str, connections: int, seconds: float, users: List[Any], group_names: List[str]) -> Dict[str, Any]:
    """One cell, in a process of its own: the plugin is on or off from create_app() on."""
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--cell", json.dumps({"url": url, "plugin": plugin, "case": case, "connections": connections,
                                                          "seconds": seconds, "users": len(users), "groups": group_names})],
        capture_output=True, text=True, timeout=600, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("ALEPH_", "OPENALEPH_"))},
    )
    if done.returncode != 0:
        raise RuntimeError("the %s/%s/%d cell failed:\n%s%s" % (plugin, case, connections, done.stdout, done.stderr))
    return json.loads(done.stdout.strip().splitlines()[-1])


def cell(spec: Dict[str, Any]) -> None:
    sys.path.insert(0, str(TESTS))
    from support import standin
    from support.cases import Login

    os.environ["ALEPH_DATABASE_URI"] = spec["url"]
    os.environ["ROLESYNC_ALEPH"] = spec["plugin"]
    standin.activate(standin.ALEPH41)
    from sqlalchemy import event

    from aleph.core import create_app, db
    from aleph.oauth import make_oauth_token, provider

    sessions_api = importlib.import_module("aleph.views.sessions_api")
    app = create_app()
    counted = threading.local()

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        counted.n = getattr(counted, "n", 0) + (len(parameters) if executemany and parameters else 1)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", count)
    names = spec["groups"]
    per_thread = spec["users"] // spec["connections"]
    deadline = time.monotonic() + spec["seconds"]
    latencies: List[float] = []
    statements: List[int] = []
    errors = [0]
    lock = threading.Lock()

    def worker(index: int) -> None:
        mine = range(index * per_thread, (index + 1) * per_thread)
        flip = {u: False for u in mine}
        i = 0
        while time.monotonic() < deadline:
            u = mine[i % len(mine)]
            i += 1
            groups = names[:5]
            if spec["case"] == "changed":
                # Swap the last group for the spare one, and back on the next login of this user.
                flip[u] = not flip[u]
                if flip[u]:
                    groups = names[:4] + [names[5]]
            token = make_oauth_token(Login("u%d" % u, "u%d@example.org" % u, "User %d" % u, tuple(groups)).claims())
            counted.n = 0
            started = time.perf_counter()
            with app.app_context():
                result = sessions_api.oauth_callback(provider, token)
            took = (time.perf_counter() - started) * 1000
            with lock:
                if result.status != 200:
                    errors[0] += 1
                latencies.append(took)
                statements.append(counted.n)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(spec["connections"])]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    latencies.sort()
    print(json.dumps({
        "plugin": spec["plugin"], "case": spec["case"], "connections": spec["connections"],
        "logins": len(latencies), "seconds": elapsed, "perConnection": len(latencies) / elapsed / spec["connections"],
        "p50": pct(latencies, 50), "p99": pct(latencies, 99),
        "statements": statistics.median(statements), "errors": errors[0],
    }))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--cell":
        cell(json.loads(sys.argv[2]))
    else:
        main()
