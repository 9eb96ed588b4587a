"""TransactionConflict (another transaction on the same item, which DynamoDB reports as a cancellation) is retried,
never mistaken for a failed condition such as insufficient points; past the retry budget it is a 503."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from loyalty.adapters.dynamodb.points_store import LoyaltyStore
from loyalty.core.errors import InsufficientPoints, StoreContention
from loyalty.points.activities import Refund
from loyalty.points.ledger import EntryKind
from loyalty.points.service import LoyaltyService
from tests.integration.conftest import Loyalty

RETRY_BUDGET = 12  # LoyaltyStore's default max_attempts


def transaction_conflict() -> ClientError:
    """What DynamoDB answers when another transaction holds the member item: cancelled, with per-item reasons."""
    return ClientError(
        {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                "[TransactionConflict, None, None]",
            },
            "CancellationReasons": [
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
                {"Code": "None"},
                {"Code": "None"},
            ],
        },
        "TransactWriteItems",
    )


class ConflictingClient:
    """The real client, except that its next `conflicts` transactions are cancelled by a concurrent one."""

    def __init__(self, real: Any):
        self._real = real
        self.conflicts = 0
        self.calls = 0

    def transact_write_items(self, **request: Any) -> Any:
        self.calls += 1
        if self.calls <= self.conflicts:
            raise transaction_conflict()
        return self._real.transact_write_items(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@dataclass
class Conflicted:
    system: Loyalty  # the test's table, reached through the conflicting client
    client: ConflictingClient
    sleeps: list[float] = field(default_factory=list)

    def conflict_next(self, conflicts: int) -> None:
        self.client.calls, self.client.conflicts = 0, conflicts
        self.sleeps.clear()


@pytest.fixture
def conflicted(loyalty: Loyalty) -> Conflicted:
    client = ConflictingClient(loyalty.client)
    sleeps: list[float] = []
    store = LoyaltyStore(client, loyalty.table, sleep=sleeps.append)  # backoff recorded, not slept
    system = Loyalty(loyalty.backend, loyalty.client, loyalty.table, store, LoyaltyService(store, cache_seconds=0))
    return Conflicted(system, client, sleeps)


def test_a_redemption_cancelled_by_conflicts_within_the_budget_succeeds_exactly_once(conflicted: Conflicted) -> None:
    system = conflicted.system
    member_id = system.enroll()
    system.buy(member_id, "100.00")
    conflicted.conflict_next(RETRY_BUDGET - 1)

    outcome = system.service.redeem(member_id, "ten-points", "redeem-1")

    assert (outcome.status, outcome.replayed) == (201, False)
    assert conflicted.client.calls == RETRY_BUDGET  # eleven cancelled, the twelfth went through
    assert len(conflicted.sleeps) == RETRY_BUDGET - 1
    assert all(0 <= pause <= 0.5 for pause in conflicted.sleeps)  # jittered, capped backoff
    assert system.available(member_id) == 90
    assert [e.kind for e in system.ledger(member_id)].count(EntryKind.REDEEM) == 1
    system.assert_ledger_is_true(member_id)


def test_conflicts_beyond_the_budget_are_a_503_never_insufficient_points(conflicted: Conflicted) -> None:
    system = conflicted.system
    member_id = system.enroll()
    system.buy(member_id, "100.00")
    before = system.all_items()
    conflicted.conflict_next(RETRY_BUDGET)

    with pytest.raises(StoreContention) as contention:
        system.service.redeem(member_id, "ten-points", "redeem-1")

    assert not isinstance(contention.value, InsufficientPoints)
    assert contention.value.status == 503
    assert conflicted.client.calls == RETRY_BUDGET
    assert system.all_items() == before  # nothing written, so the caller may retry with the same key ...
    conflicted.conflict_next(0)
    assert system.service.redeem(member_id, "ten-points", "redeem-1").status == 201  # ... and it goes through
    assert system.available(member_id) == 90


def test_a_conflict_on_a_member_with_too_few_points_is_still_retried_before_the_real_answer(
    conflicted: Conflicted,
) -> None:
    system = conflicted.system
    member_id = system.enroll()
    system.buy(member_id, "5.00")
    conflicted.conflict_next(2)

    refused = system.service.redeem(member_id, "ten-points", "redeem-1")

    assert (refused.status, refused.body["code"]) == (409, "insufficient_points")
    # two conflicts retried, then the condition itself failed; then the refusal was remembered (a put, not a
    # transaction, so the conflicted client does not count it)
    assert conflicted.client.calls == 3


@pytest.mark.parametrize("operation", ["purchase", "refund", "enroll", "engagement"])
def test_every_ledger_write_retries_a_conflict(conflicted: Conflicted, operation: str) -> None:
    system = conflicted.system
    member_id = system.enroll()
    system.buy(member_id, "100.00", order_id="web-1")
    conflicted.conflict_next(3)

    if operation == "purchase":
        system.buy(member_id, "20.00", order_id="web-2")
        expected = 120
    elif operation == "refund":
        system.service.refund(Refund(order_id="web-1", refund_id="rf-1", amount=Decimal("40")))
        expected = 60
    elif operation == "engagement":
        system.review(member_id, key="review-1")
        expected = 150
    else:
        other = system.enroll("cust-conflicted")
        assert system.store.member_id_for_external("cust-conflicted") == other
        expected = 100

    assert conflicted.client.calls == 4
    assert len(conflicted.sleeps) == 3
    assert system.available(member_id) == expected
    system.assert_ledger_is_true(member_id)
