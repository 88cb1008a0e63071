"""Stand-in for Aleph 4.1.6's OAuth callback (`aleph.views.sessions_api`): written from the facts.

As in Aleph, this module binds `handle_oauth` by name at import time
(`from aleph.oauth import handle_oauth, OAuthError`) and the callback calls
that module-level name, so rebinding `aleph.views.sessions_api.handle_oauth`
changes what the callback runs, and rebinding `aleph.oauth.handle_oauth`
alone does not.

What runs is what Aleph's `oauth_callback` does once the provider's token is
in hand (the state check and the token exchange are left out):
`handle_oauth`; OAuthError -> 401; RoleBlockedError -> a redirect to the UI
with code=403; otherwise `role.last_login_at = now (UTC)`, `db.session.commit()`,
success. Any other exception escapes, which Flask answers with a 500; the
session is rolled back when the app context ends (Flask-SQLAlchemy's teardown).
Aleph's post-commit cache refresh (`update_role`) and session token are left
out: they do not write to the database.

`oauth_callback(provider, oauth_token)` runs the same steps outside a request
(inside an app context) and returns a `CallbackResult`; the route
GET/POST /api/2/sessions/callback takes the claims of the test token as JSON.
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Optional
from urllib.parse import urlencode

from flask import Blueprint, jsonify, redirect, request
from prometheus_client import Counter

from aleph.core import db
from aleph.model import RoleBlockedError
from aleph.oauth import OAuthError, handle_oauth, make_oauth_token, provider
from aleph.settings import SETTINGS

log = logging.getLogger(__name__)
blueprint = Blueprint("sessions_api", __name__)

AUTH_ATTEMPTS = Counter(
    "aleph_auth_attempts_total",
    "Total number of successful/failed authentication attemps",
    ["method", "result"],
)


@dataclass
class CallbackResult:
    """What one callback amounted to.

    status: 200 logged in; 401 refused (OAuthError); 403 blocked (Aleph answers
    with a redirect to the UI carrying code=403, in `location`); 500 an
    exception escaped the callback (in `error`).
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


def _ui_url(path: str, **query: Any) -> str:
    return SETTINGS.APP_UI_URL.rstrip("/") + "/" + path + "?" + urlencode(query)


def _login(provider: Any, oauth_token: Mapping[str, Any]) -> CallbackResult:
    try:
        role = handle_oauth(provider, oauth_token)
    except OAuthError as exc:
        AUTH_ATTEMPTS.labels(method="oauth", result="failed").inc()
        return CallbackResult(401, error=exc)
    except RoleBlockedError as exc:
        return CallbackResult(403, error=exc, location=_ui_url("oauth", status="error", code=403))

    role.last_login_at = datetime.now(timezone.utc)
    db.session.commit()
    AUTH_ATTEMPTS.labels(method="oauth", result="success").inc()
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
    if result.status == 403:
        return redirect(result.location or _ui_url("oauth"))
    return jsonify({"status": "ok", "role_id": result.role_id})
