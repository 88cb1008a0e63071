"""Stand-in for Aleph 4.1.6's `aleph.model.role`: written from the facts, not Aleph's code.

The `role` table holds users, groups and system roles; `role_membership`
links a member to a group. As in Aleph, the model declares the association
table without a key (the key, `role_membership_pkey`, exists only in the
database, from Alembic revision 131674bde902), and `Role.roles` / `Role.members`
are a plain many-to-many relationship over it, so the ORM deletes a removed
membership with one `DELETE ... WHERE group_id = ? AND member_id = ?` per row
and raises StaleDataError when the count of matched rows differs.
"""
import logging
from typing import Any, Mapping, Optional

from sqlalchemy import func

from aleph.core import db
from aleph.model.common import IdModel, SoftDeleteModel, utcnow

log = logging.getLogger(__name__)

membership = db.Table(
    "role_membership",
    db.Column("group_id", db.Integer, db.ForeignKey("role.id")),
    db.Column("member_id", db.Integer, db.ForeignKey("role.id")),
)


class RoleBlockedError(Exception):
    pass


class PasswordCredentialsError(Exception):
    pass


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
    api_key_digest = db.Column(db.Unicode, nullable=True)
    api_key_expires_at = db.Column(db.DateTime, nullable=True)
    api_key_expiration_notification_sent = db.Column(db.Integer, nullable=True)
    is_admin = db.Column(db.Boolean, nullable=False, default=False)
    is_muted = db.Column(db.Boolean, nullable=False, default=False)
    is_tester = db.Column(db.Boolean, nullable=False, default=False)
    is_blocked = db.Column(db.Boolean, nullable=False, default=False)
    password_digest = db.Column(db.Unicode, nullable=True)
    reset_token = db.Column(db.Unicode, nullable=True)
    locale = db.Column(db.Unicode, nullable=True)
    last_login_at = db.Column(db.DateTime, nullable=True)

    @property
    def is_actor(self) -> bool:
        """A user that is neither blocked nor soft-deleted."""
        return self.type == self.USER and not self.is_blocked and self.deleted_at is None

    def update(self, data: Mapping[str, Any]) -> None:
        """Aleph's profile update: the name (else the e-mail, else the foreign id), flags, locale; touches."""
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
        """Makes this role a member of the group `role`, unless it already is."""
        if role in self.roles:
            log.warning("Tried to add duplicate role membership: %r %r", self, role)
        else:
            self.roles.append(role)
            db.session.add(role)
        db.session.add(self)
        self.updated_at = utcnow()

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
        """Check, then insert: the role with this foreign id, created when not found; flushes."""
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
