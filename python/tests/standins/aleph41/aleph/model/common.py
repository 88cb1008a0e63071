"""Stand-in for the mixins of Aleph 4.1.6's `aleph.model.common`: written from the facts.

Every model has an integer `id`; dated models get `created_at` and
`updated_at` from Python (naive UTC, no server default); soft-deletable models
have `deleted_at`, and their queries leave such rows out unless asked.
"""
from datetime import datetime, timezone
from typing import Any, Optional

from aleph.core import db


def utcnow() -> datetime:
    """Naive UTC, as Aleph's `datetime.utcnow()` gives."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


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
        if id is None:
            return None
        return cls.all(deleted=deleted).filter_by(id=id).first()


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
