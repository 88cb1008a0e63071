"""Stand-in for Aleph 4.1.6's `aleph.util` (the part the login uses): written from the facts."""
from typing import Optional

from aleph.settings import SETTINGS


def is_auto_admin(email: Optional[str]) -> bool:
    """True when the address is one of ALEPH_ADMINS, ignoring case."""
    if email is None:
        return False
    return email.lower() in {admin.lower() for admin in SETTINGS.ADMINS}
