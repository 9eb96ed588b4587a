"""The tier review as the template deploys it: statemachines/tier_review.asl.json on moto's interpreter, its tasks
run by functions/tier_review (a Distributed Map of shares, each looping while it continues), on the template's
table (moto). A lapsed VIB goes down with its TierChanged record; a second execution moves nobody again. The
review's rules and races are tests/unit/test_tier_review.py's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.states import TemplateJob
from loyalty.core import ids
from loyalty.points.members import Consent, Member, Profile
from tests.integration.roster_job import roster_job


@pytest.fixture
def world() -> Iterator[tuple[TemplateJob, Any]]:
    with roster_job("TierReviewStateMachine", "TierReviewFunction", "tier_review", {"TIER_REVIEW_SHARES": "3"}) as made:
        yield made


def _member(service: Any, tier: str) -> str:
    member = Member(
        member_id=ids.member_id(),
        external_id=f"cust-{uuid.uuid4().hex[:10]}",
        profile=Profile(),
        consent=Consent(),
        referral_code=ids.referral_code(),
        tier=tier,
        enrolled_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    service.store.create_member(member)
    return member.member_id


def test_an_execution_moves_lapsed_members_down_one_level_and_a_second_moves_nobody(
    world: tuple[TemplateJob, Any],
) -> None:
    job, service = world
    rouge, vib, insider = (_member(service, tier) for tier in ("Rouge", "VIB", "Insider"))

    first = job.server.client.start_execution(stateMachineArn=job.state_machine_arn, name="first", input="{}")
    described = job.wait(first["executionArn"])

    assert [service.member(m).tier for m in (rouge, vib, insider)] == ["VIB", "Insider", "Insider"]
    moves = service.member(rouge).tier_history
    assert [(m.from_tier, m.to_tier, m.reason) for m in moves] == [("Rouge", "VIB", "review")]
    output = json.loads(described["output"])
    shares = output["reviewed"]["shares"]
    assert len(shares) == 3 and sum(s["read"] for s in shares) == 3 and sum(s["moved"] for s in shares) == 2

    again = job.server.client.start_execution(stateMachineArn=job.state_machine_arn, name="again", input="{}")
    output = json.loads(job.wait(again["executionArn"])["output"])

    assert sum(s["moved"] for s in output["reviewed"]["shares"]) == 0
    assert [service.member(m).tier for m in (rouge, vib, insider)] == ["VIB", "Insider", "Insider"]
