"""Cognito pre-token-generation trigger: puts the member id into a shopper's ID token.

A shopper who enrolled themselves did so with their Cognito `sub` as external id; this trigger looks that up and
adds `custom:member_id`, which the API reads to let the token reach that member (and only that member). Admins and
server callers (by group) get nothing added. A shopper not enrolled yet gets a token without it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty.core.access import ADMIN_GROUP, SERVICE_GROUP
from loyalty.core.observability import invocation
from loyalty.runtime import loyalty_service


@invocation()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event.get("request", {})
    groups = set(request.get("groupConfiguration", {}).get("groupsToOverride") or [])
    if groups & {ADMIN_GROUP, SERVICE_GROUP}:
        return event
    subject = request.get("userAttributes", {}).get("sub")
    member_id = loyalty_service().member_id_for_external(subject) if subject else None
    if member_id is not None:
        event.setdefault("response", {})["claimsOverrideDetails"] = {
            "claimsToAddOrOverride": {"custom:member_id": member_id}
        }
    return event
