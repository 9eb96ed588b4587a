"""Members manage themselves, on the in-memory store: the profile changed by a JSON merge patch (once under an
Idempotency-Key), each consent granted and withdrawn with its history, and the consents given at enrolment as the
history's start. No AWS; that the in-memory store behaves as the table does is the contract suite's business
(tests/integration/test_points_store_contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.errors import IdempotencyKeyReused, InvalidRequest, MemberNotFound
from loyalty.core.events import EventType, domain_event_from_item
from loyalty.points.members import (
    Consent,
    ConsentChange,
    ConsentChannel,
    Enrollment,
    Profile,
    ProfileChanges,
    ProfilePatch,
)
from loyalty.points.service import LoyaltyService

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
UNKNOWN = "m_" + "0" * 26


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryPointsStore:
    return MemoryPointsStore(clock=lambda: NOW)


@pytest.fixture
def service(store: MemoryPointsStore, clock: Clock) -> LoyaltyService:
    return LoyaltyService(store, cache_seconds=0, clock=clock)


def enroll(service: LoyaltyService, consent: Consent | None = None, **profile: str) -> str:
    enrollment = Enrollment(
        external_id="cust-1",
        profile=Profile.model_validate(profile or {"first_name": "Ada", "country": "FR"}),
        consent=consent or Consent(),
    )
    return str(service.enroll(enrollment).body["member_id"])


def patch(document: dict[str, Any]) -> ProfilePatch:
    return ProfilePatch.model_validate(document)


# ---- the profile -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"email": "ada@example.com"}, {"first_name": "Ada", "country": "FR", "email": "ada@example.com"}),
        ({"first_name": "Grace"}, {"first_name": "Grace", "country": "FR"}),
        ({"country": None}, {"first_name": "Ada"}),
        ({"country": None, "locale": "fr-FR"}, {"first_name": "Ada", "locale": "fr-FR"}),
        ({"postal_code": None}, {"first_name": "Ada", "country": "FR"}),  # removing what is absent: nothing
        ({}, {"first_name": "Ada", "country": "FR"}),
    ],
    ids=["add", "replace", "null-removes", "remove-and-add", "remove-absent", "empty"],
)
def test_a_merge_patch_changes_only_the_fields_it_names(
    service: LoyaltyService, document: dict[str, Any], expected: dict[str, str]
) -> None:
    member_id = enroll(service)

    outcome = service.update_profile(member_id, patch(document))

    assert (outcome.status, outcome.replayed) == (200, False)
    assert outcome.body["profile"] == expected
    assert service.member(member_id).profile.model_dump(exclude_none=True) == expected


def test_a_patch_that_changes_something_moves_the_revision_and_an_empty_one_does_not(
    service: LoyaltyService, store: MemoryPointsStore
) -> None:
    member_id = enroll(service)
    before = store.member_item(member_id)["revision"]

    service.update_profile(member_id, patch({}))
    assert store.member_item(member_id)["revision"] == before
    service.update_profile(member_id, patch({"country": "DE"}))

    assert store.member_item(member_id)["revision"] == before + 1  # segments read the country: re-evaluated


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"phone": "0612345678"}, "phone"),
        ({"country": "fr"}, "country"),
        ({"first_name": ""}, "first_name"),
        ({"nickname": "Ada"}, "nickname"),
        ({"first_name": 7}, "first_name"),
    ],
)
def test_a_patch_is_validated_as_the_profile_is_and_names_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ProfilePatch.model_validate(document)

    assert [error["loc"] for error in refused.value.errors()] == [(field,)]
    with pytest.raises(ValidationError):  # the same refusal as at enrolment
        Profile.model_validate(document)


def test_a_patch_says_what_it_sets_and_what_it_removes() -> None:
    changes = patch({"first_name": "Grace", "email": None, "country": "FR"}).changes()

    assert changes == ProfileChanges(values={"country": "FR", "first_name": "Grace"}, removed=frozenset({"email"}))
    assert not changes.empty and patch({}).changes().empty
    applied = changes.applied_to(Profile(first_name="Ada", email="ada@example.com", locale="fr"))
    assert applied == Profile(first_name="Grace", country="FR", locale="fr")


def test_the_same_patch_under_the_same_key_changes_nothing_again_and_answers_the_member_as_they_are_now(
    service: LoyaltyService, store: MemoryPointsStore
) -> None:
    member_id = enroll(service)
    first = service.update_profile(member_id, patch({"email": "ada@example.com"}), "key-1")
    service.update_profile(member_id, patch({"email": None}), "key-2")  # a later change the replay must not undo
    revision = store.member_item(member_id)["revision"]

    again = service.update_profile(member_id, patch({"email": "ada@example.com"}), "key-1")

    assert first.status == again.status == 200 and again.replayed and not first.replayed
    assert "email" not in again.body["profile"]  # the member now, not a second application of the patch
    assert store.member_item(member_id)["revision"] == revision


def test_another_patch_under_a_key_already_used_is_refused_and_changes_nothing(service: LoyaltyService) -> None:
    member_id = enroll(service)
    service.update_profile(member_id, patch({"email": "ada@example.com"}), "key-1")

    with pytest.raises(IdempotencyKeyReused) as refused:
        service.update_profile(member_id, patch({"email": "grace@example.com"}), "key-1")

    assert refused.value.field == "Idempotency-Key"
    assert service.member(member_id).profile.email == "ada@example.com"


def test_a_key_is_scoped_to_its_member(service: LoyaltyService, store: MemoryPointsStore) -> None:
    ada = enroll(service)
    grace = str(service.enroll(Enrollment(external_id="cust-2")).body["member_id"])
    service.update_profile(ada, patch({"first_name": "Ada"}), "key-1")

    outcome = service.update_profile(grace, patch({"first_name": "Grace"}), "key-1")

    assert not outcome.replayed and service.member(grace).profile.first_name == "Grace"


@pytest.mark.parametrize("key", [None, "key-1"])
def test_patching_an_unknown_member_is_a_404_that_keeps_nothing(service: LoyaltyService, key: str | None) -> None:
    with pytest.raises(MemberNotFound):
        service.update_profile(UNKNOWN, patch({"first_name": "Ada"}), key)
    with pytest.raises(MemberNotFound):  # the key is not taken by the refusal: the same request fails the same way
        service.update_profile(UNKNOWN, patch({"first_name": "Ada"}), key)


# ---- consents ----------------------------------------------------------------------------------------------------


def history(service: LoyaltyService, member_id: str) -> list[tuple[str, bool, str]]:
    changes = service.consents(member_id, 100, None)["history"]
    return [(change["channel"], change["granted"], change["source"]) for change in changes]


def test_the_consents_given_at_enrolment_start_the_history_and_absent_ones_are_no(service: LoyaltyService) -> None:
    member_id = enroll(service, Consent(email=True, profiling=True))

    consents = service.consents(member_id, 100, None)

    assert consents["consent"] == {"email": True, "sms": False, "push": False, "whatsapp": False, "profiling": True}
    assert sorted(history(service, member_id)) == [("email", True, "enrollment"), ("profiling", True, "enrollment")]
    assert {change["at"] for change in consents["history"]} == {"2026-06-15T12:00:00Z"}


def test_granting_a_consent_sets_it_and_records_when_and_by_whom(service: LoyaltyService, clock: Clock) -> None:
    member_id = enroll(service)
    clock.now = NOW + timedelta(days=2)

    answer = service.set_consent(member_id, ConsentChannel.SMS, True, "member")

    assert answer["changed"] is True and answer["granted"] is True
    assert answer["change"]["at"] == "2026-06-17T12:00:00Z" and answer["change"]["source"] == "member"
    assert service.member(member_id).consent.sms is True
    assert history(service, member_id) == [("sms", True, "member")]


@pytest.mark.parametrize(("enrolled_with", "granted"), [(True, True), (False, False)])
def test_setting_a_consent_to_what_it_already_is_records_nothing(
    service: LoyaltyService, store: MemoryPointsStore, enrolled_with: bool, granted: bool
) -> None:
    member_id = enroll(service, Consent(email=enrolled_with))
    before = (history(service, member_id), store.member_item(member_id)["revision"])

    answer = service.set_consent(member_id, ConsentChannel.EMAIL, granted, "service")

    assert (answer["changed"], answer["change"], answer["granted"]) == (False, None, granted)
    assert (history(service, member_id), store.member_item(member_id)["revision"]) == before


def test_withdrawing_and_granting_again_keeps_every_change_newest_first(
    service: LoyaltyService, store: MemoryPointsStore, clock: Clock
) -> None:
    member_id = enroll(service, Consent(profiling=True))
    revision = store.member_item(member_id)["revision"]
    for hours, granted, source in ((1, False, "member"), (2, False, "member"), (3, True, "admin")):
        clock.now = NOW + timedelta(hours=hours)
        service.set_consent(member_id, ConsentChannel.PROFILING, granted, source)

    assert history(service, member_id) == [
        ("profiling", True, "admin"),
        ("profiling", False, "member"),
        ("profiling", True, "enrollment"),
    ]
    assert store.member_item(member_id)["revision"] == revision + 2  # each change of a fact the segments read
    assert service.member(member_id).consent.profiling is True


def test_the_history_pages_newest_first_without_repeating_or_skipping(service: LoyaltyService) -> None:
    member_id = enroll(service)
    for channel in ConsentChannel:
        service.set_consent(member_id, channel, True, "member")
    seen: list[str] = []
    cursor = None
    while True:
        page = service.consents(member_id, 2, cursor)
        seen += [change["channel"] for change in page["history"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [channel.value for channel in reversed(ConsentChannel)]


def test_a_cursor_from_elsewhere_is_refused_naming_the_cursor(service: LoyaltyService) -> None:
    member_id = enroll(service)
    service.set_consent(member_id, ConsentChannel.PUSH, True, "member")
    ledger_cursor = "eyJzayI6IkxFREdFUiMwMSJ9"  # {"sk":"LEDGER#01"}: a ledger position, not a history one

    with pytest.raises(InvalidRequest) as refused:
        service.consents(member_id, 10, ledger_cursor)

    assert refused.value.field == "cursor"


def test_consents_of_an_unknown_member_are_a_404(service: LoyaltyService) -> None:
    with pytest.raises(MemberNotFound):
        service.set_consent(UNKNOWN, ConsentChannel.EMAIL, True, "member")
    with pytest.raises(MemberNotFound):
        service.consents(UNKNOWN, 10, None)


def test_every_consent_channel_is_a_consent_flag() -> None:
    assert [channel.value for channel in ConsentChannel] == list(Consent.model_fields)


def test_a_consent_change_is_published_as_consent_changed_without_personal_data() -> None:
    change = ConsentChange(change_id="01J0CHANGE", channel=ConsentChannel.SMS, granted=False, at=NOW, source="member")
    item = {**change.model_dump(mode="json"), "member_id": "m_1", "event_type": EventType.CONSENT_CHANGED.value}

    event = domain_event_from_item(item)

    assert event is not None and event.event_type is EventType.CONSENT_CHANGED
    assert (event.event_id, event.member_id, event.occurred_at) == ("01J0CHANGE", "m_1", "2026-06-15T12:00:00Z")
    assert event.detail == {"channel": "sms", "granted": False, "source": "member"}
