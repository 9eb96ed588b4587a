"""Admin API: the program document and its versions; the rewards catalog (rewards, their terms, retirement and
stock); segmentation (the catalog, sizes and members of segments, the marketer-defined segments and the whole
segmentation document, refresh runs and KPIs). Every route needs the admin role. Parse, authorise, call the loyalty
or the segmentation service, map the result: no business rules here."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from loyalty.core.errors import InvalidRequest
from loyalty.core.http import (
    ADMIN,
    Api,
    answer,
    documented,
    documented_write,
    idempotency_key,
    model_response,
    outcome_response,
)
from loyalty.core.observability import api_tracer, from_api_request, invocation, metrics, record_api_answer
from loyalty.core.settings import settings
from loyalty.points.ports import StockChange, StockDelta, StockLevel
from loyalty.points.program import ProgramDocument
from loyalty.points.rewards import MAX_STOCK, Reward, RewardTerms
from loyalty.runtime import loyalty_service, refresh_executions, segmentation_service
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.ids import FAMILIES, MAX_SLUG_LENGTH
from loyalty.segments.prediction import PredictionModel
from loyalty.segments.rules import SegmentDefinition
from loyalty.segments.service import manual_run_id

tracer = api_tracer()
api = Api()
app = api.app
app.configure_openapi(
    title="Serverless Loyalty Admin API",
    version="1",
    description="For program admins and marketers: the program document (earning rules, tiers, promotions, rewards "
    "and expiry policies) and its versions; the rewards catalog; segments, their members, sizes and KPIs, the "
    "marketer-defined segments and the segmentation document, refresh runs. Every route needs an admin token.",
    security_schemes={"cognito": HTTPBearer(bearerFormat="JWT", description="Cognito ID token (loyalty-admins)")},
    security=[{"cognito": []}],
)

SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
# ^(rfm|points|lifecycle|rule):<slug>$, from the families the segments module assigns, so a new one is reachable
SEGMENT_ID_PATTERN = rf"^({'|'.join(FAMILIES)}):{SLUG_PATTERN[1:]}"

SegmentId = Annotated[
    str,
    Path(
        pattern=SEGMENT_ID_PATTERN,
        max_length=MAX_SLUG_LENGTH + 16,
        description="A segment id as members carry it: rfm:<id>, points:<id>, lifecycle:<stage> or rule:<slug>.",
    ),
]
RuleSegmentSlug = Annotated[
    str,
    Path(
        pattern=SLUG_PATTERN,
        max_length=MAX_SLUG_LENGTH,
        description="A marketer-defined segment's id (a slug); its members carry rule:<slug>.",
    ),
]
RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$", description="A refresh run id.")]
RewardId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="A reward id (a slug).")]
RunKey = Annotated[str, idempotency_key("Names the run: the same key returns the run it started and starts nothing.")]
ProgramKey = Annotated[
    str | None,
    idempotency_key("Makes the replace safe to retry: the same key returns the first answer and changes nothing."),
]
ProgramVersionNumber = Annotated[int, Path(ge=1, le=10**9, description="A version of the program document.")]

_NOT_ADMIN = (403, "The token is not an admin's")
_UNKNOWN_SEGMENT = (404, "No such segment")
_UNKNOWN_REWARD = (404, "No such reward")


# ---- response and request models -------------------------------------------------------------------------------


class SegmentSummary(BaseModel):
    segment_id: str
    name: str
    size: int = Field(description="Members at the last refresh; 0 before the first, or for an empty segment.")
    kpis: dict[str, Any] | None = Field(
        description="The segment members' KPIs at the last refresh (docs/segments.md); null before the first."
    )
    as_of: str | None = Field(description="As-of moment of the last completed refresh; null before the first.")
    run_id: str | None = Field(description="The refresh these figures come from.")


class SegmentCatalog(BaseModel):
    segments: list[SegmentSummary] = Field(description="Every segment id the segmentation document can assign.")


class SizeAtRefresh(BaseModel):
    run_id: str
    as_of: str
    size: int


class SegmentDetail(BaseModel):
    segment_id: str
    name: str
    definition: SegmentDefinition | None = Field(description="The rule of a marketer-defined segment; else null.")
    size: int = Field(description="Members at the last refresh (0 before the first).")
    history: list[SizeAtRefresh] = Field(description="Size at each refresh, newest first.")


class SegmentMember(BaseModel):
    member_id: str
    entered_at: str


class SegmentMembersPage(BaseModel):
    members: list[SegmentMember]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class RuleSegmentList(BaseModel):
    segments: list[SegmentDefinition]


class RuleSegmentBody(BaseModel):
    """A marketer-defined segment as written: the version is the API's to give."""

    model_config = ConfigDict(extra="forbid")

    segment_id: str | None = Field(default=None, description="If given, the id in the path.")
    name: str = Field(description="1-100 characters.")
    description: str = Field(default="", description="At most 1000 characters.")
    rule: dict[str, Any] = Field(
        description='The rule (docs/segments.md): {"all": [...]}, {"any": [...]}, {"not": {...}} or '
        '{"field": ..., "op": ..., "value": ...}.'
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: AwareDatetime | None = Field(
        default=None, description="The moment members are segmented as of; now if absent, at most 5 minutes ahead."
    )
    workers: int | None = Field(default=None, ge=1, le=256, description="Parallel scan workers; the default if absent.")


class RefreshRun(BaseModel):
    run_id: str
    status: str = Field(description="scanning (pass one), scoring (pass two), finishing, then complete; or failed.")
    as_of: str
    workers: int
    requested_by: str | None
    started_at: str
    completed_at: str | None
    config_version: int | None = Field(description="The segmentation document version the run segments by.")
    pass1_done: int | None
    pass2_done: int | None
    members: int | None
    members_read: int | None
    members_without_profiling: int | None = Field(
        description="Members read who have not consented to profiling: left out of the cut points and the model's "
        'sample, and in no behavioural segment (docs/segments.md, "Profiling consent"). Null before pass one ends.'
    )
    changed_members: int | None
    changes: int | None
    stale_members: int | None
    cut_points: dict[str, Any] | None = Field(description="The RFM cut points the run computed, once it has.")
    model: PredictionModel | None = Field(
        description="The prediction model the run fitted at the end of pass one on its sample of members (BG/NBD in "
        "days; Gamma-Gamma, or null when it was not fitted; sample sizes; whether the BG/NBD fit converged), and "
        "published with the cut points for the member predictions (docs/prediction.md). Null while the run scans, "
        "and when it fitted none (too few members or repeaters in the sample, or a failed fit)."
    )


class RefreshRunList(BaseModel):
    runs: list[RefreshRun] = Field(description="Newest first.")


class ProgramVersionPage(BaseModel):
    versions: list[ProgramDocument] = Field(description="Newest first; the first page starts with the one in force.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class Analytics(BaseModel):
    run_id: str | None = Field(description="The last completed refresh; null before the first.")
    as_of: str | None
    overall: dict[str, Any] | None = Field(description="KPIs over every member (docs/segments.md).")
    tiers: dict[str, dict[str, Any]] = Field(description="KPIs per tier name.")
    segments: dict[str, dict[str, Any]] = Field(description="KPIs per segment id.")


class RewardPage(BaseModel):
    rewards: list[Reward] = Field(description="By id; retired and out of stock rewards too.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class RewardBody(RewardTerms):
    """A reward as an admin writes it: the id is the path's, the version the API's to give."""

    reward_id: str | None = Field(default=None, description="If given, the id in the path.")
    version: int | None = Field(
        default=None, description="If given (a reward read and sent back), the If-Match version; absent to create."
    )


class StockRequest(BaseModel):
    """Exactly one of: add (a delta; negative takes), set (a number), unlimited."""

    model_config = ConfigDict(extra="forbid")

    add: int | None = Field(
        default=None,
        ge=-MAX_STOCK,
        le=MAX_STOCK,
        description="Added to the stock, which must exist (not unlimited) and stay in 0..10,000,000; negative takes.",
    )
    set: int | None = Field(default=None, ge=0, le=MAX_STOCK, description="The stock from now on.")
    unlimited: bool | None = Field(default=None, description="true: the stock is unlimited from now on.")

    @model_validator(mode="after")
    def _one_change(self) -> StockRequest:
        given = [name for name in ("add", "set", "unlimited") if getattr(self, name) is not None]
        if len(given) != 1 or self.unlimited is False or self.add == 0:
            raise ValueError("give exactly one of: add (not 0), set, unlimited (true)")
        return self

    def change(self) -> StockChange:
        if self.add is not None:
            return StockDelta(self.add)
        return StockLevel(self.set)


# ---- helpers ---------------------------------------------------------------------------------------------------


def _document(config: SegmentationConfig) -> dict[str, Any]:
    """The document as clients read it: rules under their JSON names (all, any, not)."""
    return config.model_dump(mode="json", by_alias=True)


# ---- the program document (docs/program.md) ----------------------------------------------------------------------


@api.get(
    "/v1/admin/program",
    access=ADMIN,
    summary="The program document in force: earning rules, tiers, promotions, policies, its version, when and by whom",
    responses=documented(200, ProgramDocument, "The document in force", 401, _NOT_ADMIN),
)
def get_program() -> Response[Any]:
    return answer(200, ProgramDocument, loyalty_service().program_document().public())


@api.put(
    "/v1/admin/program",
    access=ADMIN,
    summary="Replace the whole program document, if it is still at the version in If-Match",
    responses=documented_write(
        200,
        ProgramDocument,
        "Replaced: the new version, in force; a replay under the same Idempotency-Key gets the first answer "
        "(Idempotent-Replayed: true)",
        400,
        401,
        _NOT_ADMIN,
        (409, "The document is no longer at the If-Match version: read it again (the answer gives `version`)"),
        (
            422,
            "The document is invalid: every problem at once, each with its field path (promotions[0].ends_at); or "
            "the Idempotency-Key was used for another request",
        ),
    ),
)
def put_program(
    document: Annotated[ProgramDocument, Body()],
    if_match: Annotated[
        int,
        Header(
            alias="If-Match",
            ge=1,
            description="The version this change was made from (`version` of the document read).",
        ),
    ],
    idempotency_key: ProgramKey = None,
) -> Response[Any]:
    outcome = loyalty_service().replace_program(
        document.model_dump(mode="json"), if_match, api.caller().subject, idempotency_key=idempotency_key
    )
    return outcome_response(outcome, ProgramDocument)


@api.get(
    "/v1/admin/program/versions",
    access=ADMIN,
    summary="Every version of the program document, newest first",
    responses=documented(200, ProgramVersionPage, "A page of versions", 401, _NOT_ADMIN, 422),
)
def list_program_versions(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the previous page.")] = None,
) -> Response[Any]:
    versions, next_cursor = loyalty_service().program_versions(limit, cursor)
    return answer(200, ProgramVersionPage, {"versions": [v.public() for v in versions], "next_cursor": next_cursor})


@api.get(
    "/v1/admin/program/versions/<version>",
    access=ADMIN,
    summary="One version of the program document (the one a ledger entry's program_version names, say)",
    responses=documented(
        200, ProgramDocument, "The version", 401, _NOT_ADMIN, (404, "No such version of the program"), 422
    ),
)
def get_program_version(version: ProgramVersionNumber) -> Response[Any]:
    return answer(200, ProgramDocument, loyalty_service().program_version(version).public())


# ---- segments --------------------------------------------------------------------------------------------------


@api.get(
    "/v1/admin/segments",
    access=ADMIN,
    summary="Every segment the document can assign, with its size and KPIs at the last refresh",
    responses=documented(200, SegmentCatalog, "The catalog", 401, _NOT_ADMIN),
)
def list_segments() -> Response[Any]:
    return answer(200, SegmentCatalog, {"segments": segmentation_service().catalog()})


@api.get(
    "/v1/admin/segments/<segment_id>",
    access=ADMIN,
    summary="A segment: its definition (rule segments), current size and size per refresh",
    responses=documented(200, SegmentDetail, "The segment", 401, _NOT_ADMIN, _UNKNOWN_SEGMENT, 422),
)
def get_segment(
    segment_id: SegmentId,
    history: Annotated[int, Query(ge=1, le=100, description="How many refreshes of size history.")] = 30,
) -> Response[Any]:
    return answer(200, SegmentDetail, segmentation_service().segment(segment_id, history))


@api.get(
    "/v1/admin/segments/<segment_id>/members",
    access=ADMIN,
    summary="A page of a segment's members, from the membership index",
    responses=documented(200, SegmentMembersPage, "A page of members", 401, _NOT_ADMIN, _UNKNOWN_SEGMENT, 422),
)
def list_segment_members(
    segment_id: SegmentId,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the previous page.")] = None,
) -> Response[Any]:
    members, next_cursor = segmentation_service().segment_members(segment_id, limit, cursor)
    page = [SegmentMember(member_id=m.member_id, entered_at=m.entered_at) for m in members]
    return model_response(200, SegmentMembersPage(members=page, next_cursor=next_cursor))


# ---- marketer-defined segments -------------------------------------------------------------------------------


@api.get(
    "/v1/admin/segment-definitions",
    access=ADMIN,
    summary="The marketer-defined (rule) segments of the segmentation document",
    responses=documented(200, RuleSegmentList, "The rule segments", 401, _NOT_ADMIN),
)
def list_segment_definitions() -> Response[Any]:
    definitions = segmentation_service().document().rule_segments
    return answer(200, RuleSegmentList, {"segments": [d.document() for d in definitions]})


@api.put(
    "/v1/admin/segment-definitions/<segment_id>",
    access=ADMIN,
    summary="Create (201) or replace (200) a marketer-defined segment; its version goes up by one",
    responses=documented_write(
        200,
        SegmentDefinition,
        "Replaced",
        400,
        401,
        _NOT_ADMIN,
        (409, "The segmentation document kept changing meanwhile; retry"),
        (422, "The definition is invalid: every problem, each with its JSON path (rule.all[2].value)"),
    )
    | {201: {"description": "Created", "content": {"application/json": {"model": SegmentDefinition}}}},
)
def put_segment_definition(
    segment_id: RuleSegmentSlug, definition: Annotated[RuleSegmentBody, Body()]
) -> Response[Any]:
    if definition.segment_id is not None and definition.segment_id != segment_id:
        raise InvalidRequest(
            f"segment_id {definition.segment_id!r} is not the path's {segment_id!r}", field="segment_id"
        )
    document = {**definition.model_dump(exclude={"segment_id"}), "segment_id": segment_id}
    stored, created = segmentation_service().put_rule_segment(document)
    location = {"Location": f"/v1/admin/segment-definitions/{segment_id}"}
    return answer(201 if created else 200, SegmentDefinition, stored.document(), location if created else None)


@api.delete(
    "/v1/admin/segment-definitions/<segment_id>",
    access=ADMIN,
    summary="Delete a marketer-defined segment (its members leave it at the next refresh)",
    responses=documented(
        204,
        None,
        "Deleted",
        401,
        _NOT_ADMIN,
        (404, "No such rule segment"),
        (409, "The segmentation document kept changing meanwhile; retry"),
        422,
    ),
)
def delete_segment_definition(segment_id: RuleSegmentSlug) -> Response[Any]:
    segmentation_service().delete_rule_segment(segment_id)
    return Response(status_code=204, body="")


# ---- the segmentation document --------------------------------------------------------------------------------


@api.get(
    "/v1/admin/segmentation",
    access=ADMIN,
    summary="The whole segmentation document: thresholds, RFM map, KPI periods, rule segments, version",
    responses=documented(200, SegmentationConfig, "The document", 401, _NOT_ADMIN),
)
def get_segmentation() -> Response[Any]:
    return answer(200, SegmentationConfig, _document(segmentation_service().document()))


@api.put(
    "/v1/admin/segmentation",
    access=ADMIN,
    summary="Replace the whole segmentation document, if it is still at the version in If-Match",
    responses=documented_write(
        200,
        SegmentationConfig,
        "Replaced; the answer carries the new version",
        400,
        401,
        _NOT_ADMIN,
        (409, "The document is no longer at the If-Match version: read it again (the answer gives `version`)"),
        (422, "The document is invalid; each error names its field"),
    ),
)
def put_segmentation(
    document: Annotated[SegmentationConfig, Body()],
    if_match: Annotated[
        int,
        Header(
            alias="If-Match",
            ge=1,
            description="The version this change was made from (`version` of the document read).",
        ),
    ],
) -> Response[Any]:
    # Handed over as the model dumps itself, which is how the store writes it: a document the store could not read
    # back fails the service's validation instead of being stored.
    replaced = segmentation_service().replace_document(document.model_dump(mode="json"), if_match)
    return answer(200, SegmentationConfig, _document(replaced))


# ---- refresh runs ------------------------------------------------------------------------------------------------


@api.post(
    "/v1/admin/segment-refreshes",
    access=ADMIN,
    summary="Start a segment refresh now (202); the same Idempotency-Key again returns that run (200)",
    responses=documented_write(
        202,
        RefreshRun,
        "Started",
        400,
        401,
        _NOT_ADMIN,
        (409, "Another refresh is running (code refresh_in_progress; the answer gives its run_id)"),
        422,
    )
    | {
        200: {
            "description": "The run this key already started (Idempotent-Replayed: true); nothing new started",
            "content": {"application/json": {"model": RefreshRun}},
        }
    },
)
def start_refresh(
    idempotency_key: RunKey,
    request: Annotated[RefreshRequest | None, Body()] = None,
) -> Response[Any]:
    caller = api.caller()
    request = request or RefreshRequest()
    service = segmentation_service()
    run, created = service.start_refresh(
        refresh_executions(),
        manual_run_id(idempotency_key),
        service.manual_as_of(request.as_of),
        request.workers or settings().refresh_workers,
        requested_by=caller.subject,
    )
    headers = {"Location": f"/v1/admin/segment-refreshes/{run['run_id']}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return answer(202 if created else 200, RefreshRun, run, headers)


@api.get(
    "/v1/admin/segment-refreshes",
    access=ADMIN,
    summary="Recent refresh runs, newest first",
    responses=documented(200, RefreshRunList, "Runs", 401, _NOT_ADMIN, 422),
)
def list_refreshes(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response[Any]:
    return answer(200, RefreshRunList, {"runs": segmentation_service().refresh_runs(limit, refresh_executions())})


@api.get(
    "/v1/admin/segment-refreshes/<run_id>",
    access=ADMIN,
    summary="One refresh run: status, progress, counts",
    responses=documented(200, RefreshRun, "The run", 401, _NOT_ADMIN, (404, "No such run"), 422),
)
def get_refresh(run_id: RunId) -> Response[Any]:
    return answer(200, RefreshRun, segmentation_service().refresh_run(run_id, refresh_executions()))


# ---- KPIs ----------------------------------------------------------------------------------------------------


@api.get(
    "/v1/admin/analytics",
    access=ADMIN,
    summary="KPIs overall, per tier and per segment, from the last completed refresh",
    responses=documented(200, Analytics, "The KPIs", 401, _NOT_ADMIN),
)
def get_analytics() -> Response[Any]:
    return answer(200, Analytics, segmentation_service().analytics())


# ---- the rewards catalog ---------------------------------------------------------------------------------------


@api.get(
    "/v1/admin/rewards",
    access=ADMIN,
    summary="Every reward, retired and out of stock ones too, by id, a page at a time",
    responses=documented(200, RewardPage, "A page of rewards", 401, _NOT_ADMIN, 422),
)
def list_catalog(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the previous page.")] = None,
) -> Response[Any]:
    rewards, next_cursor = loyalty_service().rewards_page(limit, cursor)
    return answer(200, RewardPage, {"rewards": [r.public() for r in rewards], "next_cursor": next_cursor})


@api.get(
    "/v1/admin/rewards/<reward_id>",
    access=ADMIN,
    summary="A reward as stored now: its terms, stock and version",
    responses=documented(200, Reward, "The reward", 401, _NOT_ADMIN, _UNKNOWN_REWARD, 422),
)
def get_reward(reward_id: RewardId) -> Response[Any]:
    return answer(200, Reward, loyalty_service().reward(reward_id).public())


@api.put(
    "/v1/admin/rewards/<reward_id>",
    access=ADMIN,
    summary="Create a reward (201, no If-Match) or replace its terms (200, If-Match: its version); the stock stays",
    description="A replace sets every term and adds one to the version; the stock is set at creation and moved by "
    "redemptions and POST .../stock only, so a replace made from a reward read a while ago cannot undo the "
    "redemptions made since. A replace with active true brings a retired reward back.",
    responses=documented_write(
        200,
        Reward,
        "Replaced; the answer carries the new version",
        400,
        401,
        _NOT_ADMIN,
        (404, "If-Match names a version of a reward that does not exist"),
        (
            409,
            "The reward exists already (no If-Match), or is no longer at the If-Match version: read it again (the "
            "answer gives `version`)",
        ),
        (422, "The reward is invalid: every problem, each with its field"),
    )
    | {201: {"description": "Created", "content": {"application/json": {"model": Reward}}}},
)
def put_reward(
    reward_id: RewardId,
    reward: Annotated[RewardBody, Body()],
    if_match: Annotated[
        int | None,
        Header(
            alias="If-Match",
            ge=1,
            description="The version this change was made from (`version` of the reward read); absent to create.",
        ),
    ] = None,
) -> Response[Any]:
    if reward.reward_id is not None and reward.reward_id != reward_id:
        raise InvalidRequest(f"reward_id {reward.reward_id!r} is not the path's {reward_id!r}", field="reward_id")
    if reward.version is not None and reward.version != if_match:
        raise InvalidRequest(f"version {reward.version} is not the If-Match version ({if_match})", field="version")
    terms = RewardTerms.model_validate(reward.model_dump(exclude={"reward_id", "version"}))
    stored, created = loyalty_service().save_reward(reward_id, terms, if_match)
    location = {"Location": f"/v1/admin/rewards/{reward_id}"}
    return answer(201 if created else 200, Reward, stored.public(), location if created else None)


@api.delete(
    "/v1/admin/rewards/<reward_id>",
    access=ADMIN,
    summary="Retire a reward: offered to no one and not redeemable, kept for the ledger (active false)",
    responses=documented(
        200, Reward, "Retired; the answer carries the new version", 401, _NOT_ADMIN, _UNKNOWN_REWARD, 422
    ),
)
def retire_reward(reward_id: RewardId) -> Response[Any]:
    return answer(200, Reward, loyalty_service().retire_reward(reward_id).public())


@api.post(
    "/v1/admin/rewards/<reward_id>/stock",
    access=ADMIN,
    summary="Add to a reward's stock, take from it (never below 0), set it, or make it unlimited",
    responses=documented_write(
        200,
        Reward,
        "Changed; the answer carries the stock now",
        400,
        401,
        _NOT_ADMIN,
        _UNKNOWN_REWARD,
        (
            409,
            "stock_conflict: the stock would go below 0 or above 10,000,000, or is unlimited (the answer gives `stock`)",
        ),
        422,
    ),
)
def change_stock(reward_id: RewardId, change: Annotated[StockRequest, Body()]) -> Response[Any]:
    return answer(200, Reward, loyalty_service().change_stock(reward_id, change.change()).public())


@api.get(
    "/v1/admin/openapi.json",
    access=ADMIN,
    summary="This API's OpenAPI document (admins only)",
    responses=documented(200, None, "The document", 401, _NOT_ADMIN),
)
def openapi_document() -> Response[Any]:
    return Response(status_code=200, content_type="application/json", body=app.get_openapi_json_schema())


@tracer.capture_lambda_handler(capture_response=False)  # answers carry members' data: never in a trace
@metrics.log_metrics(capture_cold_start_metric=True)
@invocation(correlation_id=from_api_request)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = api.handle(event, context)
    record_api_answer(event, response)
    return response
