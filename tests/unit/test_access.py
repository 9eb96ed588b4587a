"""Who is calling, read from the API Gateway request context, and what they may reach."""

from __future__ import annotations

from typing import Any

import pytest

from loyalty.core.access import Caller, Role, caller_from_request_context, require_member_access, require_role
from loyalty.core.errors import Forbidden, Unauthenticated

MEMBER = "m_01jq3b7x4m2k9r8t6v5w4y3z2a"
OTHER = "m_01jq3b7x4m2k9r8t6v5w4y3zzz"


def cognito(**claims: Any) -> dict[str, Any]:
    return {"authorizer": {"claims": {"sub": "user-sub-1", **claims}}}


def test_a_member_token_names_its_member() -> None:
    caller = caller_from_request_context(cognito(**{"custom:member_id": MEMBER}))

    assert caller == Caller(Role.MEMBER, "user-sub-1", member_id=MEMBER)
    assert not caller.is_staff


@pytest.mark.parametrize(
    "groups",
    [
        "loyalty-admins",
        "[loyalty-admins other]",
        "[other loyalty-admins]",
        "a,loyalty-admins",
        "loyalty-admins,b",
        ["loyalty-admins"],
        ["other", "loyalty-admins"],
    ],
    ids=["plain", "bracketed", "bracketed-second", "comma", "comma-first", "list", "list-second"],
)
def test_the_admin_group_is_read_in_every_shape_api_gateway_flattens_it_to(groups: Any) -> None:
    caller = caller_from_request_context(cognito(**{"cognito:groups": groups}))

    assert caller.role is Role.ADMIN
    assert caller.is_staff


def test_admin_wins_over_a_member_id_on_the_same_token() -> None:
    caller = caller_from_request_context(cognito(**{"cognito:groups": "loyalty-admins", "custom:member_id": MEMBER}))

    assert caller.role is Role.ADMIN


@pytest.mark.parametrize("groups", ["loyalty-services", "[loyalty-services]", ["loyalty-services"]])
def test_the_service_group_makes_a_server_caller(groups: Any) -> None:
    caller = caller_from_request_context(cognito(**{"cognito:groups": groups}))

    assert caller.role is Role.SERVICE
    assert caller.is_staff


@pytest.mark.parametrize("groups", ["loyalty-admins-readonly", "xloyalty-admins", "[loyalty-adminsx]"])
def test_a_group_that_only_contains_the_admin_name_is_not_admin(groups: str) -> None:
    caller = caller_from_request_context(cognito(**{"cognito:groups": groups}))

    assert caller.role is Role.USER


def test_a_signed_in_user_who_is_not_enrolled_is_a_user() -> None:
    caller = caller_from_request_context(cognito(email="ada@example.com"))

    assert caller == Caller(Role.USER, "user-sub-1")


def test_a_lambda_authorizer_service_context_is_a_server_caller() -> None:
    caller = caller_from_request_context({"authorizer": {"principalType": "service", "principalId": "commerce"}})

    assert caller == Caller(Role.SERVICE, "commerce")


@pytest.mark.parametrize(
    "context",
    [
        None,
        {},
        {"authorizer": None},
        {"authorizer": {}},
        {"authorizer": {"claims": {}}},
        {"authorizer": {"claims": {"custom:member_id": MEMBER}}},  # claims without a subject
        {"authorizer": {"principalType": "service"}},  # no principal id
        {"authorizer": {"principalType": "member", "principalId": "someone"}},
    ],
    ids=[
        "none",
        "empty",
        "null-authorizer",
        "empty-authorizer",
        "empty-claims",
        "no-sub",
        "no-principal",
        "not-service-principal",
    ],
)
def test_a_request_without_an_authenticated_caller_is_refused(context: Any) -> None:
    with pytest.raises(Unauthenticated) as refused:
        caller_from_request_context(context)

    assert refused.value.status == 401


def test_a_member_reaches_their_own_record() -> None:
    require_member_access(Caller(Role.MEMBER, "s", member_id=MEMBER), MEMBER)


def test_a_member_cannot_reach_another_member() -> None:
    with pytest.raises(Forbidden) as refused:
        require_member_access(Caller(Role.MEMBER, "s", member_id=MEMBER), OTHER)

    assert refused.value.status == 403


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SERVICE])
def test_staff_reach_any_member(role: Role) -> None:
    require_member_access(Caller(role, "staff"), MEMBER)
    require_member_access(Caller(role, "staff"), OTHER)


def test_a_user_who_is_not_enrolled_reaches_no_member() -> None:
    with pytest.raises(Forbidden):
        require_member_access(Caller(Role.USER, MEMBER), MEMBER)


def test_require_role_names_the_roles_a_route_needs() -> None:
    require_role(Caller(Role.ADMIN, "a"), Role.ADMIN)
    with pytest.raises(Forbidden, match="admin, service"):
        require_role(Caller(Role.MEMBER, "s", member_id=MEMBER), Role.ADMIN, Role.SERVICE)
