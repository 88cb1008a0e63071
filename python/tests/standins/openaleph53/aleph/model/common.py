"""Stand-in for the mixins of OpenAleph 5.3's `aleph.model.common`: written from the facts.

Every model has an integer `id`; dated models get `created_at` and
`updated_at` from Python (naive UTC, no server default); soft-deletable models
have `deleted_at`, and their queries leave such rows out unless asked.
`make_token` makes the URL-safe random strings OpenAleph stores as api keys.
"""
import secrets
from datetime import datetime, timezone
from typing import Any, Optional

from aleph.core import db


def utcnow() -> datetime:
    """Naive UTC, as OpenAleph's `datetime.utcnow()` gives."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def make_token() -> str:
    return secrets.token_urlsafe()


class IdModel:
    id = db.Column(db.Integer(), primary_key=True)


class DatedModel:
    created_at = db.Column(db.DateTime, default=utcnow)
    updated_at = db.Column(db.DateTime, default=utcnow)

    @classmethod
    def all(cls, deleted: bool = False) -> Any:
        return db.session.query(cls)

    @classmethod
    def by_id(cls, id: Any, deleted: bool = False) -> Optional[Any]:
        # OpenAleph converts the id to int first (psycopg 3 sends typed parameters).
        try:
            number = int(id)
        except (TypeError, ValueError):
            return None
        return cls.all(deleted=deleted).filter_by(id=number).first()


class SoftDeleteModel(DatedModel):
    deleted_at = db.Column(db.DateTime, default=None, nullable=True)

    @classmethod
    def all(cls, deleted: bool = False) -> Any:
        query = super().all(deleted=deleted)
        if not deleted:
            query = query.filter(cls.deleted_at.is_(None))
        return query

    def delete(self, deleted_at: Optional[datetime] = None) -> None:
        self.deleted_at = deleted_at or utcnow()
        db.session.add(self)
