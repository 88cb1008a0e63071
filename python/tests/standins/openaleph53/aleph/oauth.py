"""Stand-in for OpenAleph 5.3's `aleph.oauth`: written from the facts, not OpenAleph's code.

`handle_oauth` follows OpenAleph 5.3's login step by step, in the same order:

1. parse the id token (none: return None);
2. name = `name` or `given_name`; email = `email` or `upn`;
   foreign id = "<OAUTH_HANDLER>:<sub>", the e-mail standing in for a missing sub;
3. look the user up by foreign id (soft-deleted rows are not found);
4. with OAUTH_MIGRATE_SUB and nothing found: look it up by e-mail, and if
   found, re-key it to the new foreign id and `update({"name": name})`;
5. still nothing: `load_or_create` the user (check, then insert; an api key
   when it has none), an admin when its e-mail is one of ALEPH_ADMINS;
6. not an actor (blocked, deleted, or not a user): return None;
7. `is_admin` recomputed: ALEPH_ADMINS, or the token's admin group;
8. every other group `load_or_create`d as "group:<name>" (which may write an
   api key into an existing group row), then `update_groups` with them all;
9. `update_name(name or email)`.

There is no OAuthError and no RoleBlockedError: None is the failure signal.
The identity provider is faked: `TestProvider.parse_id_token` returns the
claims the test put in the token, and `_get_groups` reads their "groups"
claim (and ADFS's single "group") instead of decoding an access token.
"""
import logging
from typing import Any, Dict, List, Mapping, Optional, Set

from aleph.settings import SETTINGS
from aleph.util import is_auto_admin

log = logging.getLogger(__name__)


class TestProvider:
    """A stand-in for the Authlib client: the token it is given already carries its claims."""

    __test__ = False  # not a pytest test class

    def __init__(self, client_id: Optional[str] = None) -> None:
        self.client_id = client_id or SETTINGS.OAUTH_KEY

    def parse_id_token(self, oauth_token: Mapping[str, Any], nonce: Optional[str] = None) -> Optional[Dict[str, Any]]:
        claims = oauth_token.get("userinfo")
        return dict(claims) if claims is not None else None


def make_oauth_token(claims: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """What the token exchange would return, with the id token's claims already parsed."""
    return {
        "access_token": "standin-access-token",
        "id_token": "standin-id-token",
        "token_type": "Bearer",
        "userinfo": dict(claims) if claims is not None else None,
    }


#: What `oauth.provider` is in OpenAleph once OAuth is configured.
provider = TestProvider()


def _get_groups(provider: Any, oauth_token: Mapping[str, Any], id_token: Mapping[str, Any]) -> Set[str]:
    """The token's groups, as a set without None."""
    groups: list = list(id_token.get("groups") or [])
    groups.append(id_token.get("group"))
    return {group for group in groups if group is not None}


def handle_oauth(provider: Any, oauth_token: Mapping[str, Any]) -> Any:
    from aleph.model import Role

    token = provider.parse_id_token(oauth_token)
    if token is None:
        return None
    name = token.get("name", token.get("given_name"))
    email = token.get("email", token.get("upn"))
    foreign_id = "%s:%s" % (SETTINGS.OAUTH_HANDLER, token.get("sub", email))

    role = Role.by_foreign_id(foreign_id)
    if role is None and SETTINGS.OAUTH_MIGRATE_SUB:
        role = Role.by_email(email)
        if role is not None:
            role.foreign_id = foreign_id
            role.update({"name": name})
    if role is None:
        role = Role.load_or_create(foreign_id, Role.USER, name, email=email, is_admin=is_auto_admin(email))

    if not role.is_actor:
        return None

    role.is_admin = is_auto_admin(email)
    group_roles: List[Any] = []
    for group in _get_groups(provider, oauth_token, token):
        if group == SETTINGS.OAUTH_ADMIN_GROUP:
            role.is_admin = True
            continue
        group_roles.append(Role.load_or_create("group:%s" % group, Role.GROUP, group))

    role.update_groups(group_roles)
    role.update_name(name or email)
    return role
