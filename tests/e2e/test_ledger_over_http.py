"""The ledger's lines, shown through the local HTTP gateway on both DynamoDB emulators."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.e2e.conftest import ADMIN, SERVICE, Api


def test_concurrent_redemptions_never_overdraw(api: Api) -> None:
    # Given a member whose balance affords exactly ten 10-point rewards
    member_id = api.enroll()
    assert api.purchase(member_id, "100.00").status_code == 201
    assert api.member(member_id)["balance"]["available"] == 100

    # When 50 redemptions arrive at once, each with its own idempotency key
    def redeem(index: int) -> int:
        response = api.call(
            "POST",
            f"/v1/members/{member_id}/redemptions",
            token=f"dev:member:{member_id}",
            json={"reward_id": "ten-points"},
            headers={"Idempotency-Key": f"burst-{index}"},
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(redeem, range(50)))

    # Then exactly ten succeed, the rest are refused with 409, and the balance is the sum of the ledger
    assert statuses.count(201) == 10
    assert statuses.count(409) == 40
    balance = api.member(member_id)["balance"]
    ledger = api.ledger(member_id)
    assert balance["available"] == 0 == sum(entry["points"] for entry in ledger)
    assert balance["redeemed"] == 100
    assert len([e for e in ledger if e["kind"] == "redeem"]) == 10


def test_every_write_replayed_returns_the_first_answer_and_adds_nothing(api: Api) -> None:
    # Given a member with some points
    external_id = f"cust-{uuid.uuid4().hex[:10]}"
    first = api.call("POST", "/v1/members", json={"external_id": external_id})
    again = api.call("POST", "/v1/members", json={"external_id": external_id})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["member_id"] == first.json()["member_id"]
    member_id = first.json()["member_id"]
    path = f"/v1/members/{member_id}/activities"

    # When every kind of write is sent twice with the same key
    writes = [
        (
            path,
            {"type": "purchase", "order_id": f"o-{uuid.uuid4().hex}", "amount": "250.00", "currency": "USD"},
            SERVICE,
            None,
        ),
        (path, {"type": "review", "reference": "SKU-1"}, SERVICE, f"k-{uuid.uuid4().hex}"),
        (
            path,
            {"type": "adjustment", "points": 7, "reason": "goodwill for a late parcel"},
            ADMIN,
            f"k-{uuid.uuid4().hex}",
        ),
        (
            f"/v1/members/{member_id}/redemptions",
            {"reward_id": "coupon"},
            f"dev:member:{member_id}",
            f"k-{uuid.uuid4().hex}",
        ),
    ]
    answers = []
    for route, body, token, key in writes:
        headers = {"Idempotency-Key": key} if key else None
        one = api.call("POST", route, token=token, json=body, headers=headers)
        two = api.call("POST", route, token=token, json=body, headers=headers)
        # Then the replay returns the first answer, marked as a replay
        assert one.status_code == 201, one.text
        assert (two.status_code, two.json()) == (one.status_code, one.json())
        assert two.headers.get("Idempotent-Replayed") == "true"
        answers.append(one.json())
    order_id = writes[0][1]["order_id"]
    refund = {"type": "refund", "order_id": order_id, "refund_id": "rf-1", "amount": "50.00"}
    one = api.call("POST", path, token=SERVICE, json=refund)
    two = api.call("POST", path, token=SERVICE, json=refund)
    assert one.status_code == 201 and (two.status_code, two.json()) == (201, one.json())

    # And nothing was added twice: 250 + 50 + 7 - 100 - 50 = 157
    ledger = api.ledger(member_id)
    assert len(ledger) == 5
    balance = api.member(member_id)["balance"]
    assert balance["available"] == 157 == sum(e["points"] for e in ledger)
    assert answers[3]["voucher_code"]


def test_same_idempotency_key_for_another_request_is_refused(api: Api) -> None:
    member_id = api.enroll()
    api.purchase(member_id, "300.00")
    headers = {"Idempotency-Key": "reused"}
    route = f"/v1/members/{member_id}/redemptions"
    assert api.call("POST", route, json={"reward_id": "coupon"}, headers=headers).status_code == 201
    clash = api.call("POST", route, json={"reward_id": "ten-points"}, headers=headers)
    assert clash.status_code == 422
    assert clash.json()["errors"][0]["field"] == "Idempotency-Key"
    assert api.member(member_id)["balance"]["available"] == 200


def test_commerce_events_earn_and_refund_once(api: Api, stack: Any) -> None:
    # Given a member known to the commerce system by their external id
    external_id = f"shop-{uuid.uuid4().hex[:10]}"
    member_id = api.call("POST", "/v1/members", json={"external_id": external_id}).json()["member_id"]
    order_id = f"web-{uuid.uuid4().hex[:10]}"
    events = stack.client("events")
    bus = stack.resource_name("LoyaltyBus")
    placed = {
        "Source": "commerce",
        "DetailType": "OrderPlaced",
        "EventBusName": bus,
        "Detail": json.dumps({"order_id": order_id, "customer_id": external_id, "amount": 80, "currency": "USD"}),
    }

    # When the same order is published twice (two EventBridge events, one order id)
    events.put_events(Entries=[placed])
    events.put_events(Entries=[placed])
    stack.wait_for_events("PointsEarned", member_id=member_id, count=1, timeout=30)

    # Then it earned once
    assert api.member(member_id)["balance"]["available"] == 80

    # When the same refund event is delivered twice (at-least-once delivery)
    refund_event = {
        "id": str(uuid.uuid4()),
        "detail-type": "OrderRefunded",
        "source": "commerce",
        "detail": {"order_id": order_id, "refund_id": "rf-1", "amount": 20},
    }
    stack.invoke("OrderEventsFunction", refund_event)
    stack.invoke("OrderEventsFunction", refund_event)

    # Then it reversed once, and the domain events reached the bus
    assert api.member(member_id)["balance"]["available"] == 60
    stack.wait_for_events("PointsReversed", member_id=member_id, count=1, timeout=30)
    stack.wait_for_events("MemberEnrolled", member_id=member_id, count=1, timeout=30)
    ledger = api.ledger(member_id)
    assert [e["kind"] for e in ledger] == ["reversal", "earn"]
