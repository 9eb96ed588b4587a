"""Who is calling, from the API Gateway request context, and what they may reach.

API Gateway's Cognito authorizer has verified the token before the function runs; the claims arrive in
requestContext.authorizer.claims. A member's token carries custom:member_id; admins and server callers are
Cognito groups. Server callers on a Lambda authorizer put principalType/principalId in the authorizer context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from loyalty.core.errors import Forbidden, Unauthenticated

ADMIN_GROUP = "loyalty-admins"
SERVICE_GROUP = "loyalty-services"


class Role(StrEnum):
    MEMBER = "member"  # an enrolled shopper
    USER = "user"  # signed in, not enrolled yet: may only enroll themselves
    ADMIN = "admin"
    SERVICE = "service"  # a server caller: commerce system, an app's back end


@dataclass(frozen=True)
class Caller:
    role: Role
    subject: str
    member_id: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.ADMIN, Role.SERVICE)


def _groups(claims: Mapping[str, Any]) -> set[str]:
    raw = claims.get("cognito:groups") or ""
    if isinstance(raw, list):
        return {str(g) for g in raw}
    # API Gateway flattens a list claim to "a,b" or "[a b]".
    return {g for g in str(raw).strip("[]").replace(",", " ").split() if g}


def caller_from_request_context(request_context: Mapping[str, Any] | None) -> Caller:
    authorizer = (request_context or {}).get("authorizer") or {}
    claims = authorizer.get("claims")
    if claims:
        subject = str(claims.get("sub") or "")
        if not subject:
            raise Unauthenticated("token has no subject")
        groups = _groups(claims)
        if ADMIN_GROUP in groups:
            return Caller(Role.ADMIN, subject)
        if SERVICE_GROUP in groups:
            return Caller(Role.SERVICE, subject)
        member_id = claims.get("custom:member_id")
        if member_id:
            return Caller(Role.MEMBER, subject, member_id=str(member_id))
        return Caller(Role.USER, subject)
    if authorizer.get("principalType") == "service" and authorizer.get("principalId"):
        return Caller(Role.SERVICE, str(authorizer["principalId"]))
    raise Unauthenticated("no authenticated caller")


def require_member_access(caller: Caller, member_id: str) -> None:
    """A member reaches only their own record; staff reach any."""
    if caller.is_staff or (caller.role is Role.MEMBER and caller.member_id == member_id):
        return
    raise Forbidden("this token cannot reach that member")


def require_role(caller: Caller, *roles: Role) -> None:
    if caller.role not in roles:
        raise Forbidden(f"this route needs one of: {', '.join(r.value for r in roles)}")
