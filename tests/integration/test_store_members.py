"""Enrollment against real DynamoDB semantics: once per external id, even when two requests race. Referrals (a code
named, an unknown code, a code drawn again) are the service's rules: tests/unit/test_points_service.py, with the
store's refusal of a code already held in tests/integration/test_points_store_contract.py."""

from __future__ import annotations

import threading
from datetime import date

import pytest

from loyalty.adapters.dynamodb.table import KEY_ATTRIBUTES, TTL_ATTRIBUTE
from loyalty.core.errors import MemberNotFound
from loyalty.core.idempotency import Outcome
from loyalty.points.members import Consent, Enrollment, Profile
from tests.integration.conftest import Loyalty, loyalty_table_properties


def test_the_table_has_the_keys_and_ttl_that_template_yaml_declares(loyalty: Loyalty) -> None:
    table = loyalty.client.describe_table(TableName=loyalty.table)["Table"]
    ttl = loyalty.client.describe_time_to_live(TableName=loyalty.table)["TimeToLiveDescription"]
    declared = loyalty_table_properties()

    assert table["KeySchema"] == declared["KeySchema"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == list(KEY_ATTRIBUTES)
    assert ttl["AttributeName"] == declared["TimeToLiveSpecification"]["AttributeName"] == TTL_ATTRIBUTE


def test_enrolling_twice_with_the_same_external_id_returns_the_first_member(loyalty: Loyalty) -> None:
    enrollment = Enrollment(external_id="cust-1001", profile=Profile(first_name="Ada"), consent=Consent(email=True))

    first = loyalty.service.enroll(enrollment)
    second = loyalty.service.enroll(enrollment)

    assert (first.status, first.replayed) == (201, False)
    assert (second.status, second.replayed) == (200, True)
    assert second.body["member_id"] == first.body["member_id"]
    assert loyalty.store.member_id_for_external("cust-1001") == first.body["member_id"]
    members = [item for item in loyalty.all_items() if item["SK"] == "MEMBER"]
    assert len(members) == 1


def test_a_new_member_starts_at_zero_on_the_entry_tier(loyalty: Loyalty) -> None:
    member = loyalty.service.member(loyalty.enroll())

    assert member.tier == "Insider"
    assert member.balance.available == member.balance.lifetime_earned == 0
    assert member.purchases.purchase_count == 0
    referral = loyalty.item(f"REFERRAL#{member.referral_code}", "REFERRAL")
    assert referral is not None
    assert referral["member_id"] == member.member_id


def test_two_threads_enrolling_the_same_external_id_make_one_member(loyalty: Loyalty) -> None:
    for attempt in range(5):  # five races, each between two threads released at the same instant
        external_id = f"cust-race-{attempt}"
        start = threading.Barrier(2)
        outcomes: list[Outcome] = []
        errors: list[BaseException] = []

        def enroll(
            external_id: str = external_id,
            start: threading.Barrier = start,
            outcomes: list[Outcome] = outcomes,
            errors: list[BaseException] = errors,
        ) -> None:
            start.wait()
            try:
                outcomes.append(loyalty.service.enroll(Enrollment(external_id=external_id)))
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=enroll) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        assert errors == []
        assert len({outcome.body["member_id"] for outcome in outcomes}) == 1
        assert sorted(outcome.status for outcome in outcomes) == [200, 201]
        members = [i for i in loyalty.all_items() if i["SK"] == "MEMBER" and i["external_id"] == external_id]
        assert len(members) == 1


def test_an_unknown_member_is_not_found(loyalty: Loyalty) -> None:
    with pytest.raises(MemberNotFound):
        loyalty.service.member("m_01jzzzzzzzzzzzzzzzzzzzzzzz")


def test_a_member_can_enroll_with_a_birthday(loyalty: Loyalty) -> None:
    outcome = loyalty.service.enroll(Enrollment(external_id="cust-bday", birthday=date(1990, 5, 1)))

    assert loyalty.service.member(outcome.body["member_id"]).birthday == date(1990, 5, 1)
