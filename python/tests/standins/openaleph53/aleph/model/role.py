"""Stand-in for OpenAleph 5.3's `aleph.model.role`: written from the facts, not OpenAleph's code.

OpenAleph's `role` has no `last_login_at` and none of Aleph 4.1's
`api_key_digest` / `api_key_expires_at` / `api_key_expiration_notification_sent`;
it keeps the plain `api_key`. Its `role_membership` has no key at all, in the
model or (from its Alembic chain) in the database. `Role.roles` /
`Role.members` are a plain many-to-many relationship over it, so the ORM
deletes a removed membership with one DELETE per row and raises
StaleDataError when the count of matched rows differs.

Where it differs from Aleph 4.1.6: `load_or_create` gives every role it
loads or creates an api key when it has none (users and groups alike);
`add_role` does not check for an existing membership; `update_groups` does
nothing when the new set equals the stored one, and otherwise clears and
re-adds; `update_name` stores and touches only a changed, non-empty name.
"""
import logging
from typing import Any, Iterable, Mapping, Optional

from sqlalchemy import func

from aleph.core import db
from aleph.model.common import IdModel, SoftDeleteModel, make_token, utcnow

log = logging.getLogger(__name__)

membership = db.Table(
    "role_membership",
    db.Column("group_id", db.Integer, db.ForeignKey("role.id")),
    db.Column("member_id", db.Integer, db.ForeignKey("role.id")),
)


def _clean_text(value: Any) -> Optional[str]:
    """None, or the value as stripped text, None when that is empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class Role(db.Model, IdModel, SoftDeleteModel):
    __tablename__ = "role"

    USER = "user"
    GROUP = "group"
    SYSTEM = "system"
    TYPES = [USER, GROUP, SYSTEM]

    foreign_id = db.Column(db.Unicode(2048), nullable=False, unique=True)
    name = db.Column(db.Unicode, nullable=False)
    email = db.Column(db.Unicode, nullable=True)
    type = db.Column(db.Enum(*TYPES, name="role_type"), nullable=False)
    api_key = db.Column(db.Unicode, nullable=True)
    is_admin = db.Column(db.Boolean, nullable=False, default=False)
    is_muted = db.Column(db.Boolean, nullable=False, default=False)
    is_tester = db.Column(db.Boolean, nullable=False, default=False)
    is_blocked = db.Column(db.Boolean, nullable=False, default=False)
    password_digest = db.Column(db.Unicode, nullable=True)
    reset_token = db.Column(db.Unicode, nullable=True)
    locale = db.Column(db.Unicode, nullable=True)

    @property
    def is_actor(self) -> bool:
        """A user that is neither blocked nor soft-deleted."""
        return self.type == self.USER and not self.is_blocked and self.deleted_at is None

    def update(self, data: Mapping[str, Any]) -> None:
        """The profile update: the name (else the e-mail, else the foreign id), flags, locale; touches."""
        # A key given as None counts as given: the name then falls back (facts: step 4).
        name = data["name"] if "name" in data else self.name
        self.name = name if name is not None else (self.email or self.foreign_id)
        for flag in ("is_muted", "is_tester"):
            if flag in data:
                setattr(self, flag, data[flag])
        self.locale = _clean_text(data["locale"] if "locale" in data else self.locale)
        self.touch()

    def touch(self) -> None:
        self.updated_at = utcnow()
        db.session.add(self)

    def clear_roles(self) -> None:
        """Drops every membership of this role (the ORM deletes them row by row), touches, flushes."""
        self.roles = []
        self.touch()
        db.session.flush()

    def add_role(self, role: "Role") -> None:
        """Makes this role a member of the group `role` (no check for an existing membership)."""
        self.roles.append(role)
        db.session.add(role)
        db.session.add(self)
        self.updated_at = utcnow()

    def update_groups(self, new_groups: Iterable["Role"]) -> None:
        """Nothing when the groups are the stored ones; else clear them all and add each."""
        wanted = list(new_groups)
        unchanged = set(wanted) == set(self.roles)
        if not unchanged:
            # Everything goes, then each group comes back: the ORM deletes row by row, as clear_roles() does.
            self.clear_roles()
            for group in wanted:
                self.add_role(group)

    def update_name(self, name: Optional[str]) -> None:
        if name and name != self.name:
            self.name = name
            self.touch()

    @classmethod
    def by_foreign_id(cls, foreign_id: Optional[str], deleted: bool = False) -> Optional["Role"]:
        if foreign_id is None:
            return None
        return cls.all(deleted=deleted).filter(cls.foreign_id == foreign_id).first()

    @classmethod
    def by_email(cls, email: Optional[str]) -> Optional["Role"]:
        if email is None:
            return None
        query = cls.all().filter(func.lower(cls.email) == email.lower())
        return query.filter(cls.type == cls.USER).first()

    @classmethod
    def load_or_create(
        cls,
        foreign_id: str,
        type_: str,
        name: Optional[str],
        email: Optional[str] = None,
        is_admin: bool = False,
    ) -> "Role":
        """Check, then insert; an api key for any role without one; flushes."""
        role = cls.by_foreign_id(foreign_id)
        if role is None:
            role = cls(
                foreign_id=foreign_id,
                name=name or email,
                type=type_,
                is_admin=is_admin,
                is_muted=False,
                is_tester=False,
                is_blocked=False,
            )
        if role.api_key is None:
            role.api_key = make_token()
        if email is not None:
            role.email = email
        db.session.add(role)
        db.session.flush()
        return role

    def __repr__(self) -> str:
        return "<Role(%r,%r)>" % (self.id, self.foreign_id)


Role.members = db.relationship(
    Role,
    secondary=membership,
    primaryjoin=Role.id == membership.c.group_id,
    secondaryjoin=Role.id == membership.c.member_id,
    backref="roles",
)
