"""The daily points expiry as the template deploys it: statemachines/points_expiry.asl.json on moto's interpreter,
its tasks run by functions/points_expiry, on the template's table (moto). Points whose lot ended expire once, with
their ledger entry; a second execution of the same day expires nothing more. The rules and races are
tests/unit/test_points_expiry.py's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devstack.states import TemplateJob
from loyalty.points.activities import Purchase
from loyalty.points.members import Enrollment
from tests.integration.roster_job import roster_job


@pytest.fixture
def world() -> Iterator[tuple[TemplateJob, Any]]:
    with roster_job(
        "PointsExpiryStateMachine", "PointsExpiryFunction", "points_expiry", {"EXPIRY_SHARES": "3"}
    ) as made:
        yield made


def test_an_execution_expires_the_lots_that_ended_once_and_a_second_of_the_same_day_nothing_more(
    world: tuple[TemplateJob, Any],
) -> None:
    job, service = world
    program = service.program.get()
    document = {**program.model_dump(mode="json"), "expiry": {"enabled": True, "months": 12}}
    assert service.replace_program(document, program.version, "test").status == 200
    service.program.clear()
    member = str(service.enroll(Enrollment(external_id=f"cust-{uuid.uuid4().hex[:8]}")).body["member_id"])
    bought = Purchase(order_id=f"o-{uuid.uuid4().hex[:8]}", amount=Decimal(75), currency="USD")
    entry = service.purchase(member, bought).body["entry"]
    day_after = (date.fromisoformat(entry["lot"]) + timedelta(days=1)).isoformat()

    first = job.server.client.start_execution(
        stateMachineArn=job.state_machine_arn, name="first", input=json.dumps({"day": day_after})
    )
    shares = json.loads(job.wait(first["executionArn"])["output"])["expired"]["shares"]

    assert sum(s["expired_points"] for s in shares) == 75 and sum(s["expired_members"] for s in shares) == 1
    balance = service.member(member).balance
    assert (balance.available, balance.expired) == (0, 75)

    again = job.server.client.start_execution(
        stateMachineArn=job.state_machine_arn, name="again", input=json.dumps({"day": day_after})
    )
    shares = json.loads(job.wait(again["executionArn"])["output"])["expired"]["shares"]
    assert sum(s["expired_points"] for s in shares) == 0
    assert service.member(member).balance.expired == 75
