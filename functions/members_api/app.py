"""Member and ledger API: parse, authorise, call the service, map the result. No business rules here."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from loyalty.core.access import Role, require_role
from loyalty.core.http import (
    MEMBER_OR_STAFF,
    PUBLIC,
    SIGNED_IN,
    STAFF,
    Api,
    answer,
    documented,
    documented_write,
    idempotency_key,
    model_response,
    outcome_response,
)
from loyalty.core.observability import api_tracer, from_api_request, invocation, metrics, record_api_answer
from loyalty.points.activities import Activity, ActivityType
from loyalty.points.ledger import LedgerEntry
from loyalty.points.members import Consent, ConsentChange, ConsentChannel, Enrollment, Member, ProfilePatch
from loyalty.points.rewards import Reward
from loyalty.points.tiers import TierProgress
from loyalty.runtime import loyalty_service, segmentation_service
from loyalty.segments.prediction import MemberPrediction

tracer = api_tracer()
api = Api(variants=frozenset(ActivityType))
app = api.app
app.configure_openapi(
    title="Serverless Loyalty API",
    version="1",
    description="Members, points ledger and rewards. Every write is idempotent; errors name the field at fault.",
    security_schemes={"cognito": HTTPBearer(bearerFormat="JWT", description="Cognito ID token")},
    security=[{"cognito": []}],
)
app.enable_swagger(path="/v1/docs", title="Serverless Loyalty API", version="1")
api.access[("GET", "/v1/docs")] = PUBLIC

MemberId = Annotated[str, Path(pattern=r"^m_[0-9a-z]{26}$", description="The loyalty member id.")]
IdempotencyKey = Annotated[
    str | None,
    idempotency_key(
        "Makes the write safe to retry: the same key returns the first answer and changes nothing. "
        "Required for every activity but a purchase (its order id is its key) and a refund (its refund id)."
    ),
]
RequiredIdempotencyKey = Annotated[
    str,
    idempotency_key(
        "Makes the redemption safe to retry: the same key returns the first answer, a refusal included, and "
        "changes nothing."
    ),
]

ProfileIdempotencyKey = Annotated[
    str | None,
    idempotency_key(
        "Makes the change safe to retry: the same key changes nothing again and answers the member as they are now "
        "(Idempotent-Replayed: true). A merge patch sent twice without one sets the same values twice."
    ),
]
Channel = Annotated[ConsentChannel, Path(description="What the consent is for: a channel, or profiling.")]


class HeldLot(BaseModel):
    expires_on: str = Field(description="The last day its points can be spent (YYYY-MM-DD), last-activity, or never.")
    points: int = Field(gt=0, description="Points of it still unspent (the soonest lots are spent first).")


class MemberView(Member):
    lots: list[HeldLot] = Field(description="What the member holds, soonest to expire first (docs/expiry.md).")
    progress: TierProgress = Field(
        description="Where the member stands: the tier, the next one and what it takes, the window, the next review "
        "and what keeps the tier at it, and the next reward (docs/tiers.md)."
    )


class RedemptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward_id: Annotated[str, Field(min_length=1, max_length=64)]


class EntryResult(BaseModel):
    entry: LedgerEntry
    points_due: int | None = Field(default=None, description="Refunds: points the refund was due to take back.")
    points_reversed: int | None = None
    points_unrecovered: int | None = None


class RedemptionResult(BaseModel):
    entry: LedgerEntry
    voucher_code: str | None = Field(
        default=None, description="The code to present; absent for a donation, which gives no voucher."
    )
    reward: Reward = Field(description="The reward's terms as redeemed (its stock left out: the redemption moved it).")


class LedgerPage(BaseModel):
    entries: list[LedgerEntry]
    next_cursor: str | None


class OfferedReward(Reward):
    tier_allows: bool = Field(
        description="Whether the caller's tier may redeem it (a member's own tier; the entry tier for anyone else). "
        "A reward gated above it is listed as something to reach for, except an exclusive_offer, which is not listed."
    )


class RewardList(BaseModel):
    rewards: list[OfferedReward] = Field(description="Active, inside their window and in stock; cheapest first.")


class MemberSegment(BaseModel):
    segment_id: str = Field(description="rfm:<id>, points:<id>, lifecycle:<stage> or rule:<slug> (docs/segments.md).")
    entered_at: str = Field(description="When the member entered the segment.")


class MemberSegments(BaseModel):
    member_id: str
    segments: list[MemberSegment] = Field(description="Sorted by segment id.")


@api.post(
    "/v1/members",
    access=SIGNED_IN,
    summary="Enroll a member (once per external id; 200 with the existing member after)",
    responses=documented_write(201, Member, "Enrolled", 403, 422)
    | {
        200: {
            "description": "Already enrolled: the member this external id enrolled (Idempotent-Replayed: true)",
            "content": {"application/json": {"model": Member}},
        }
    },
)
def enroll(enrollment: Annotated[Enrollment, Body()]) -> Response[Any]:
    caller = api.caller()
    if not caller.is_staff:
        require_role(caller, Role.USER, Role.MEMBER)
        if enrollment.external_id != caller.subject:
            require_role(caller, Role.ADMIN, Role.SERVICE)  # a shopper enrolls only themselves
    return outcome_response(loyalty_service().enroll(enrollment), Member)


@api.get(
    "/v1/members/<member_id>",
    access=MEMBER_OR_STAFF,
    summary="A member: profile, balance breakdown, tier, tier history and progress toward the next tier",
    responses=documented(200, MemberView, "The member", 403, 404, 422),
)
def get_member(member_id: MemberId) -> Response[Any]:
    return answer(200, MemberView, loyalty_service().member_view(member_id))


@api.post(
    "/v1/members/<member_id>/activities",
    access=STAFF,  # members never record their own earning
    summary="Record an activity that earns or reverses points",
    responses=documented_write(
        201,
        EntryResult,
        "Recorded",
        403,
        404,
        (
            409,
            "Insufficient points for a negative adjustment, a refund beyond what is left on its order, or an "
            "order id already recorded with other facts; refusals replay as refusals",
        ),
        422,
        503,
    ),
)
def record_activity(
    member_id: MemberId, activity: Annotated[Activity, Body()], idempotency_key: IdempotencyKey = None
) -> Response[Any]:
    caller = api.caller()
    if activity.type is ActivityType.ADJUSTMENT:
        require_role(caller, Role.ADMIN)
    return outcome_response(loyalty_service().record(member_id, activity, idempotency_key), EntryResult)


@api.get(
    "/v1/members/<member_id>/ledger",
    access=MEMBER_OR_STAFF,
    summary="The member's ledger, newest first",
    responses=documented(200, LedgerPage, "A page of entries", 403, 404, 422),
)
def list_ledger(
    member_id: MemberId,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response[Any]:
    return answer(200, LedgerPage, loyalty_service().ledger(member_id, limit, cursor))


@api.post(
    "/v1/members/<member_id>/redemptions",
    access=MEMBER_OR_STAFF,
    summary="Redeem a reward: points debited, voucher returned",
    responses=documented_write(
        201,
        RedemptionResult,
        "Redeemed",
        403,
        (404, "Unknown member, or a reward not in the catalog or retired (remembered under the key)"),
        (
            409,
            "The reward is not redeemable now, by code: reward_not_yet_valid, reward_expired, out_of_stock, "
            "tier_too_low, limit_reached, insufficient_points (each remembered under the key: a replay gets the same "
            "refusal)",
        ),
        422,
        503,
    ),
)
def redeem(
    member_id: MemberId, request: Annotated[RedemptionRequest, Body()], idempotency_key: RequiredIdempotencyKey
) -> Response[Any]:
    return outcome_response(loyalty_service().redeem(member_id, request.reward_id, idempotency_key), RedemptionResult)


@api.get(
    "/v1/members/<member_id>/segments",
    access=MEMBER_OR_STAFF,
    summary="The segments the member is in, with when they entered each",
    responses=documented(200, MemberSegments, "The member's segments", 403, 404, 422),
)
def list_member_segments(member_id: MemberId) -> Response[Any]:
    memberships = segmentation_service().segments_of_member(member_id)
    segments = [MemberSegment(segment_id=m.segment_id, entered_at=m.entered_at) for m in memberships]
    return model_response(200, MemberSegments(member_id=member_id, segments=segments))


class ConsentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    granted: StrictBool = Field(description="true grants the consent, false withdraws it.")


class ConsentResult(BaseModel):
    member_id: str
    channel: ConsentChannel
    granted: bool = Field(description="The consent as it is now.")
    changed: bool = Field(
        description="False when the consent already was so: nothing was written or recorded (the request is "
        "idempotent by its value)."
    )
    change: ConsentChange | None = Field(description="The history entry this request recorded; null if none.")


class MemberConsents(BaseModel):
    member_id: str
    consent: Consent = Field(description="Each consent as it is now; absent means no.")
    history: list[ConsentChange] = Field(description="Every grant and withdrawal, newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page of history; null on the last.")


@api.patch(
    "/v1/members/<member_id>/profile",
    access=MEMBER_OR_STAFF,
    summary="Change the member's profile: a JSON merge patch, a field set to null is removed",
    description="A field left out stays as it is; a value replaces it, validated as at enrolment; null removes it "
    "(RFC 7396; send it as application/json or application/merge-patch+json). One conditional write: two patches "
    "of different fields never undo each other (docs/members.md).",
    responses=documented_write(200, Member, "The member, with the profile as changed", 403, 404, 422, 503),
)
def update_profile(
    member_id: MemberId, patch: Annotated[ProfilePatch, Body()], idempotency_key: ProfileIdempotencyKey = None
) -> Response[Any]:
    return outcome_response(loyalty_service().update_profile(member_id, patch, idempotency_key), Member)


@api.put(
    "/v1/members/<member_id>/consents/<channel>",
    access=MEMBER_OR_STAFF,
    summary="Grant or withdraw one consent; the change is kept in the member's consent history",
    description="Setting a consent to what it already is records nothing (`changed` false). Withdrawing profiling "
    "takes the member out of every behavioural segment at their re-evaluation, seconds later, and their predictions "
    "are refused from then on (docs/members.md).",
    responses=documented_write(200, ConsentResult, "The consent as set, and whether it changed", 403, 404, 422, 503),
)
def set_consent(member_id: MemberId, channel: Channel, request: Annotated[ConsentRequest, Body()]) -> Response[Any]:
    source = api.caller().role.value  # member, admin or service: who made the change, never who they are
    return answer(200, ConsentResult, loyalty_service().set_consent(member_id, channel, request.granted, source))


@api.get(
    "/v1/members/<member_id>/consents",
    access=MEMBER_OR_STAFF,
    summary="The member's consents now, and their history of grants and withdrawals, newest first",
    responses=documented(200, MemberConsents, "The consents and a page of their history", 403, 404, 422),
)
def list_consents(
    member_id: MemberId,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response[Any]:
    return answer(200, MemberConsents, loyalty_service().consents(member_id, limit, cursor))


class MemberPredictionBody(MemberPrediction):
    member_id: str


@api.get(
    "/v1/members/<member_id>/prediction",
    access=STAFF,
    summary="The member's predictions: probability alive, expected purchases and spend, expected next purchase",
    description="For the program's staff and services (campaign targeting), not for the member's own app. The model "
    "is the one the last refresh fitted (docs/prediction.md); the figures are null until a refresh has fitted one. "
    "Expected spend also needs the model's Gamma-Gamma fit and a repeat purchase with positive spend. A member who "
    "has not consented to profiling gets no prediction: 409 consent_required.",
    responses=documented(
        200,
        MemberPredictionBody,
        "The member's predictions",
        403,
        404,
        (
            409,
            "consent_required: the member has not consented to profiling, so no prediction is made for them (the "
            "member's choice, not the caller's rights: it lifts when they consent; docs/members.md)",
        ),
        422,
    ),
)
def get_member_prediction(member_id: MemberId) -> Response[Any]:
    prediction = segmentation_service().member_prediction(member_id)
    return answer(200, MemberPredictionBody, {"member_id": member_id, **prediction.model_dump(mode="json")})


@api.get(
    "/v1/rewards",
    access=SIGNED_IN,
    summary="The rewards catalog as the caller sees it: what is offered now, and whether their tier may redeem it",
    responses=documented(200, RewardList, "Offered rewards (to a token naming no member: what anyone is offered)"),
)
def list_rewards() -> Response[Any]:
    caller = api.caller()
    offered = loyalty_service().offers(caller.member_id if caller.role is Role.MEMBER else None)
    return answer(200, RewardList, {"rewards": [{**o.reward.public(), "tier_allows": o.tier_allows} for o in offered]})


@api.get("/v1/openapi.json", access=PUBLIC, summary="This API's OpenAPI document")
def openapi_document() -> Response[Any]:
    return Response(status_code=200, content_type="application/json", body=app.get_openapi_json_schema())


@tracer.capture_lambda_handler(capture_response=False)  # answers carry members' data: never in a trace
@metrics.log_metrics(capture_cold_start_metric=True)
@invocation(correlation_id=from_api_request)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = api.handle(event, context)
    record_api_answer(event, response)
    return response
