"""Stand-in for OpenAleph 5.3's OAuth callback (`aleph.views.sessions_api`): written from the facts.

As in OpenAleph, this module binds `handle_oauth` by name at import time
(`from aleph.oauth import handle_oauth`) and the callback calls that
module-level name, so rebinding `aleph.views.sessions_api.handle_oauth`
changes what the callback runs, and rebinding `aleph.oauth.handle_oauth`
alone does not. The counter is spelled as OpenAleph spells it:
`AUTH_ATTEMPS`, `aleph_auth_attemps_total`.

What runs is what OpenAleph's `oauth_callback` does once the provider's token
is in hand (the state check and the token exchange are left out):
`handle_oauth`; None -> 401; otherwise `db.session.commit()`, success (there
is no `last_login_at`). Any other exception escapes, which Flask answers with
a 500; the session is rolled back when the app context ends. The post-commit
cache refresh (`update_role`) and session token are left out: they do not
write to the database.

`oauth_callback(provider, oauth_token)` runs the same steps outside a request
(inside an app context) and returns a `CallbackResult`; the route
GET/POST /api/2/sessions/callback takes the claims of the test token as JSON.
"""
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from flask import Blueprint, jsonify, request
from prometheus_client import Counter

from aleph.core import db
from aleph.oauth import handle_oauth, make_oauth_token, provider

log = logging.getLogger(__name__)
blueprint = Blueprint("sessions_api", __name__)

AUTH_ATTEMPS = Counter(
    "aleph_auth_attemps_total",
    "Total number of successful/failed authentication attemps",
    ["method", "result"],
)


@dataclass
class CallbackResult:
    """What one callback amounted to.

    status: 200 logged in; 401 refused (handle_oauth returned None);
    500 an exception escaped the callback (in `error`).
    """

    status: int
    role_id: Optional[int] = None
    error: Optional[BaseException] = None
    location: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def error_class(self) -> Optional[str]:
        return type(self.error).__name__ if self.error is not None else None


def _login(provider: Any, oauth_token: Mapping[str, Any]) -> CallbackResult:
    role = handle_oauth(provider, oauth_token)
    if role is None:
        AUTH_ATTEMPS.labels(method="oauth", result="failed").inc()
        return CallbackResult(401)

    db.session.commit()
    AUTH_ATTEMPS.labels(method="oauth", result="success").inc()
    log.debug("Logged in: %r", role)
    return CallbackResult(200, role_id=role.id)


def oauth_callback(provider: Any, oauth_token: Mapping[str, Any]) -> CallbackResult:
    """The callback after the token exchange; an escaping exception becomes a 500 result."""
    try:
        return _login(provider, oauth_token)
    except Exception as exc:  # what Flask would turn into a 500
        log.debug("OAuth callback failed: %r", exc)
        db.session.rollback()
        return CallbackResult(500, error=exc)


@blueprint.route("/api/2/sessions/callback", methods=["GET", "POST"])
def oauth_callback_view() -> Any:
    """The test route: the JSON body is the id token's claims."""
    result = _login(provider, make_oauth_token(request.get_json(silent=True)))
    if result.status == 401:
        return jsonify({"status": "error", "message": "Authentication has failed."}), 401
    return jsonify({"status": "ok", "role_id": result.role_id})
