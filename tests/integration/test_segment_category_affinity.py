"""A marketer's rule over category affinity, end to end: purchases with line items write the member's category
spend, and the segment re-evaluation (as the stream runs it) and the refresh put the buyer in the rule segment, and
a refund takes them out again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loyalty.adapters.dynamodb.segment_store import SegmentStore
from loyalty.points.activities import LineItem, Purchase, Refund
from loyalty.segments.service import SegmentationService
from tests.integration.conftest import PROFILED, Loyalty
from tests.integration.test_segment_refresh import Harness, _memberships, harnesses, quick_retries, step_functions

__all__ = ["harnesses", "quick_retries", "step_functions"]  # the fixtures the refresh test runs on

MAKEUP_FANS = {
    "segment_id": "makeup-fans",
    "name": "Makeup fans",
    "description": "Spent 50 or more on makeup, their top category",
    "rule": {
        "all": [
            {"field": "category_spend.makeup", "op": ">=", "value": 50},
            {"field": "top_category", "op": "=", "value": "makeup"},
        ]
    },
}


def buy(loyalty: Loyalty, member_id: str, order_id: str, lines: dict[str, str], when: datetime | None = None) -> None:
    items = tuple(LineItem(category=category, amount=Decimal(amount)) for category, amount in lines.items())
    total = sum((item.amount for item in items), Decimal(0))
    loyalty.service.purchase(
        member_id, Purchase(order_id=order_id, amount=total, currency="USD", occurred_at=when, line_items=items)
    )


def test_a_rule_segment_over_category_affinity_gets_the_member_who_bought_in_that_category(loyalty: Loyalty) -> None:
    # Given a marketer's rule segment over makeup spend and top category
    segmentation = SegmentationService(SegmentStore(loyalty.store), cache_seconds=0)
    segmentation.put_rule_segment(MAKEUP_FANS)
    # And a member who bought makeup (spelt as the shop spells it) and one who mostly bought fragrance
    fan = loyalty.enroll(consent=PROFILED)
    buy(loyalty, fan, "fan-1", {"Makeup": "60.00", "Skin Care": "20.00"})
    other = loyalty.enroll(consent=PROFILED)
    buy(loyalty, other, "other-1", {"Fragrance": "80.00", "makeup": "55.00"})

    # When each member is re-evaluated from their item, as the segment-events function does from the stream
    entered = segmentation.reevaluate(loyalty.member_item(fan)).entered
    segmentation.reevaluate(loyalty.member_item(other))

    # Then the makeup buyer is in the segment, and the member whose top category is fragrance is not
    assert "rule:makeup-fans" in entered
    assert "rule:makeup-fans" in {m.segment_id for m in segmentation.member_segments(fan)}
    assert "rule:makeup-fans" not in {m.segment_id for m in segmentation.member_segments(other)}

    # When the fan's makeup is refunded in full (the order's makeup share goes back out of their spend)
    loyalty.service.refund(Refund(order_id="fan-1", refund_id="rf-1", amount=Decimal("80.00")))
    left = segmentation.reevaluate(loyalty.member_item(fan)).left

    # Then they leave the segment
    assert "rule:makeup-fans" in left
    assert "rule:makeup-fans" not in {m.segment_id for m in segmentation.member_segments(fan)}


@pytest.mark.dynamodb_local
def test_the_refresh_puts_category_buyers_in_the_rule_segment(loyalty: Loyalty, request: pytest.FixtureRequest) -> None:
    if loyalty.backend == "moto":
        pytest.skip("the refresh runs on DynamoDB Local (test_segment_refresh.py explains why)")
    # (the state machine's server is started only now: never while the moto backend's in-process mock is up)
    harnesses: Callable[..., Harness] = request.getfixturevalue("harnesses")
    # Given the rule segment, a makeup buyer, a fragrance buyer, and a member who never bought
    harness = harnesses(loyalty)
    harness.service.put_rule_segment(MAKEUP_FANS)
    fan, other, idle = (loyalty.enroll(consent=PROFILED) for _ in range(3))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    buy(loyalty, fan, "fan-1", {"makeup": "50", "hair": "49.99"}, yesterday)
    buy(loyalty, other, "other-1", {"fragrance": "120"}, yesterday)

    # When a refresh's execution runs over everyone, with two shares
    harness.run_to_end("run-1", workers=2)

    # Then the rule segment holds the makeup buyer alone
    assert harness.run("run-1")["status"] == "complete"
    assert "rule:makeup-fans" in _memberships(loyalty, fan)
    assert "rule:makeup-fans" not in _memberships(loyalty, other) | _memberships(loyalty, idle)
