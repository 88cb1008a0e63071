"""The concurrent-login cases of the measurements, as reusable definitions.

A case says what the database holds before each round (`setup` once, `reset`
before every round) and which token each worker logs in with in that round
(`logins`). The runner drives them; the same cases serve the calibration of
the stand-ins and the tests of the plugin.

The cases (ALL), each round:
- token-equals: one user, stored in alpha and beta; every token says alpha, beta.
- token-differs: stored alpha, beta; every token says beta, gamma (all existing).
- groups-emptied: the user has no memberships; every token says alpha, beta.
- token-adds-group: the token names a group that does not exist yet (TokenAddsGroup).
- first-login: a user never seen before; every token says alpha, beta.
- first-admin-login: the same, with the user's e-mail in ALEPH_ADMINS.
- users-share-new-group: 8 existing users in alpha, each logging in once with
  alpha and a group that does not exist yet, the same for all.

Groups are named in tokens without their prefix ("alpha"); Aleph stores them
as roles "group:alpha". Every user and group a reset creates is made as the
line itself would have made it (in OpenAleph, with an api key).
"""
import secrets
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psycopg

ADMIN_GROUP = "superuser"


@dataclass(frozen=True)
class Login:
    """One user's id token: its claims, and what Aleph makes of them."""

    sub: str
    email: Optional[str]
    name: Optional[str]
    groups: Tuple[str, ...]

    def claims(self) -> Dict[str, Any]:
        claims: Dict[str, Any] = {"sub": self.sub, "groups": list(self.groups)}
        if self.email is not None:
            claims["email"] = self.email
        if self.name is not None:
            claims["name"] = self.name
        return claims

    def foreign_id(self, handler: str = "oidc") -> str:
        return "%s:%s" % (handler, self.sub)

    def group_foreign_ids(self, admin_group: str = ADMIN_GROUP) -> List[str]:
        """The memberships this token asks for (the admin group is a flag, not a membership)."""
        return sorted("group:%s" % group for group in set(self.groups) if group != admin_group)


class Seeder:
    """Writes users, groups and memberships straight into the database, as the line would have them."""

    def __init__(self, conn: psycopg.Connection, line: str, handler: str = "oidc") -> None:
        self.conn = conn
        self.line = line
        self.handler = handler

    def _role(self, foreign_id: str, name: str, type_: str, email: Optional[str] = None) -> int:
        row = self.conn.execute("select id from public.role where foreign_id = %s", [foreign_id]).fetchone()
        if row is not None:
            return int(row[0])
        api_key = secrets.token_urlsafe() if self.line == "openaleph53" else None
        row = self.conn.execute(
            """insert into public.role (foreign_id, name, email, type, api_key, is_admin, is_muted,
                                        is_blocked, is_tester, created_at, updated_at)
               values (%s, %s, %s, %s, %s, false, false, false, false,
                       now() at time zone 'utc', now() at time zone 'utc')
               returning id""",
            [foreign_id, name, email, type_, api_key],
        ).fetchone()
        assert row is not None
        return int(row[0])

    def group(self, name: str) -> int:
        return self._role("group:%s" % name, name, "group")

    def user(self, login: Login) -> int:
        return self._role(login.foreign_id(self.handler), login.name or login.email or login.sub, "user", login.email)

    def memberships(self, login: Login, groups: Sequence[str]) -> None:
        """Makes the user's memberships exactly `groups` (creating the user and groups if needed)."""
        member = self.user(login)
        self.conn.execute("delete from public.role_membership where member_id = %s", [member])
        for name in groups:
            self.conn.execute(
                "insert into public.role_membership (group_id, member_id) values (%s, %s)", [self.group(name), member]
            )


class Case:
    key = ""
    title = ""

    def setup(self, seed: Seeder) -> None:
        """Once, before the first round."""

    def reset(self, seed: Seeder, round: int, workers: int) -> None:
        """Before each round (0-based): the round's starting state."""

    def logins(self, round: int, workers: int) -> List[Login]:
        """One token per worker for this round."""
        raise NotImplementedError

    def env(self, rounds: int, workers: int) -> Dict[str, str]:
        """Environment the workers need for this case (e.g. ALEPH_ADMINS)."""
        return {}


def _user(sub: str, groups: Sequence[str]) -> Login:
    return Login(sub=sub, email="%s@example.org" % sub, name="User %s" % sub, groups=tuple(groups))


class StoredGroups(Case):
    """One existing user, reset to `stored` before each round; all workers log in with `token`."""

    def __init__(self, key: str, title: str, stored: Sequence[str], token: Sequence[str]) -> None:
        self.key = key
        self.title = title
        self.stored = tuple(stored)
        self.token = tuple(token)
        self.user = _user(key, token)

    def setup(self, seed: Seeder) -> None:
        for group in set(self.stored) | set(self.token):
            seed.group(group)

    def reset(self, seed: Seeder, round: int, workers: int) -> None:
        seed.memberships(self.user, self.stored)

    def logins(self, round: int, workers: int) -> List[Login]:
        return [self.user] * workers


class TokenAddsGroup(Case):
    """The token adds a group that does not exist yet, a new one each round.

    Round 0 starts from (alpha, beta) and logs in with (alpha, beta, added-1).
    Each later round starts from what the previous token asked for (alpha,
    beta, added-<r>) and logs in with the next new group (alpha, beta,
    added-<r+1>): a group is created, and one membership changes. This is
    the shape the measured numbers show (round 0 fails differently from the
    24 rounds after it).
    """

    key = "token-adds-group"
    title = "token adds a new group"

    def __init__(self) -> None:
        self.base = ("alpha", "beta")

    def _login(self, round: int) -> Login:
        return _user(self.key, self.base + ("added-%d" % (round + 1),))

    def setup(self, seed: Seeder) -> None:
        for group in self.base:
            seed.group(group)

    def reset(self, seed: Seeder, round: int, workers: int) -> None:
        stored = self.base if round == 0 else self._login(round - 1).groups
        seed.memberships(self._login(round), stored)

    def logins(self, round: int, workers: int) -> List[Login]:
        return [self._login(round)] * workers


class FirstLogin(Case):
    """Each round a user who never logged in, its token naming existing groups; all workers at once."""

    def __init__(self, key: str, title: str, admins: bool = False) -> None:
        self.key = key
        self.title = title
        self.admins = admins
        self.groups = ("alpha", "beta")

    def _login(self, round: int) -> Login:
        return _user("%s-%d" % (self.key, round + 1), self.groups)

    def setup(self, seed: Seeder) -> None:
        for group in self.groups:
            seed.group(group)

    def logins(self, round: int, workers: int) -> List[Login]:
        return [self._login(round)] * workers

    def env(self, rounds: int, workers: int) -> Dict[str, str]:
        if not self.admins:
            return {}
        # servicelayer's list separator is ':'.
        return {"ALEPH_ADMINS": ":".join(self._login(r).email or "" for r in range(rounds))}


class SharedNewGroup(Case):
    """Each worker a different existing user; each round all their tokens name one group that does not exist yet."""

    key = "users-share-new-group"
    title = "8 users name one new group"

    def _login(self, round: int, worker: int) -> Login:
        return _user("%s-%d" % (self.key, worker + 1), ("alpha", "shared-%d" % (round + 1)))

    def setup(self, seed: Seeder) -> None:
        seed.group("alpha")

    def reset(self, seed: Seeder, round: int, workers: int) -> None:
        for login in self.logins(round, workers):
            seed.memberships(login, ("alpha",))

    def logins(self, round: int, workers: int) -> List[Login]:
        return [self._login(round, worker) for worker in range(workers)]


TOKEN_EQUALS = StoredGroups("token-equals", "token equals the stored groups", ("alpha", "beta"), ("alpha", "beta"))
TOKEN_DIFFERS = StoredGroups("token-differs", "token differs", ("alpha", "beta"), ("beta", "gamma"))
GROUPS_EMPTIED = StoredGroups("groups-emptied", "stored groups emptied first", (), ("alpha", "beta"))
TOKEN_ADDS_GROUP = TokenAddsGroup()
FIRST_LOGIN = FirstLogin("first-login", "first login of a new user")
FIRST_ADMIN_LOGIN = FirstLogin("first-admin-login", "first login of an ALEPH_ADMINS user", admins=True)
SHARED_NEW_GROUP = SharedNewGroup()

ALL: List[Case] = [
    TOKEN_EQUALS,
    TOKEN_DIFFERS,
    GROUPS_EMPTIED,
    TOKEN_ADDS_GROUP,
    FIRST_LOGIN,
    FIRST_ADMIN_LOGIN,
    SHARED_NEW_GROUP,
]
BY_KEY: Dict[str, Case] = {case.key: case for case in ALL}
