"""The "one-call patch" of docs/aleph.md, section 7, applied to the Aleph 4.1.6 stand-in.

`apply_section7(app)` rebinds both `aleph.oauth.handle_oauth` and
`aleph.views.sessions_api.handle_oauth` (the name the callback calls) to
`handle_oauth_section7`: Aleph's steps 1 to 4 as they are, the
OAUTH_MIGRATE_SUB branch included (the facts say the patch keeps it), then
section 7's code: one `sync_oauth_login` call replaces the user's
`load_or_create`, `clear_roles()` and the `add_role()` loop, and the admin
rules are applied after it. Pass "support.patches:apply_section7" as the
runner's `worker_setup` to patch every worker process.
"""
from typing import Any, List, Mapping, Optional

SECTION7 = "support.patches:apply_section7"


def handle_oauth_section7(provider: Any, oauth_token: Mapping[str, Any]) -> Any:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from aleph.core import db
    from aleph.model import Role, RoleBlockedError
    from aleph.oauth import OAuthError, _get_groups
    from aleph.settings import SETTINGS
    from aleph.util import is_auto_admin

    # Aleph's steps 1 to 4, unchanged.
    token = provider.parse_id_token(oauth_token)
    if token is None:
        raise OAuthError()
    name: Optional[str] = token.get("name", token.get("given_name"))
    email: Optional[str] = token.get("email", token.get("upn"))
    role_id = "%s:%s" % (SETTINGS.OAUTH_HANDLER, token.get("sub", email))
    role = Role.by_foreign_id(role_id)
    if SETTINGS.OAUTH_MIGRATE_SUB and role is None:
        role = Role.by_email(email)
        if role is not None:
            role.foreign_id = role_id
            role.update({"name": name})

    # Section 7.
    groups: List[str] = []
    admin_group = False
    for group in _get_groups(provider, oauth_token, token):
        if group == SETTINGS.OAUTH_ADMIN_GROUP:
            admin_group = True
        else:
            groups.append("group:%s" % group)
    db.session.flush()  # if the OAUTH_MIGRATE_SUB branch above re-keyed a role
    try:
        login = db.session.execute(
            text("select * from sync_oauth_login(:member, :name, :email, cast(:groups as text[]))"),
            {"member": role_id, "name": name, "email": email, "groups": groups},
        ).one()
    except DBAPIError as exc:
        db.session.rollback()
        code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
        if code == "RS006":
            raise RoleBlockedError() from exc
        if code in ("RS001", "RS003"):
            raise OAuthError() from exc
        raise
    role = Role.by_id(login.member_id)
    if admin_group or (login.member_created and is_auto_admin(email)):
        role.is_admin = True
    role.touch()
    return role


def apply_section7(app: Any = None) -> None:
    """Makes the callback of this process run the section-7 login (Aleph 4.1.6 stand-in only)."""
    import importlib

    import aleph
    import aleph.oauth

    if getattr(aleph, "LINE", None) != "aleph41":
        raise RuntimeError("the section-7 patch is written for Aleph 4.1.6, not %s" % getattr(aleph, "LINE", "?"))
    aleph.oauth.handle_oauth = handle_oauth_section7
    # The module (aleph.views re-exports its blueprint under the same name).
    importlib.import_module("aleph.views.sessions_api").handle_oauth = handle_oauth_section7
