"""Identifiers: ledger entry ids that sort by time, member ids, and codes people read aloud."""

from __future__ import annotations

import re
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.core import ids

CROCKFORD = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
CODE_CHAR = "[2-9A-HJKMNP-TV-Z]"  # no 0/O, 1/I/L, U


def test_a_ulid_is_26_crockford_characters() -> None:
    assert CROCKFORD.match(ids.ulid())


@given(earlier=st.integers(min_value=0, max_value=2**48 - 2), gap=st.integers(min_value=1, max_value=10**9))
@settings(max_examples=300, database=None)
def test_a_later_millisecond_always_sorts_after_an_earlier_one(earlier: int, gap: int) -> None:
    later = min(earlier + gap, 2**48 - 1)

    assert ids.ulid(earlier) < ids.ulid(later)


def test_ulids_made_in_a_row_sort_in_the_order_of_their_milliseconds() -> None:
    made = [ids.ulid(1_790_000_000_000 + ms) for ms in range(0, 5000, 7)]

    assert made == sorted(made)


def test_ten_thousand_ulids_are_all_distinct_even_within_one_millisecond() -> None:
    same_ms = {ids.ulid(1_790_000_000_000) for _ in range(10_000)}
    now = {ids.ulid() for _ in range(10_000)}

    assert len(same_ms) == 10_000
    assert len(now) == 10_000


def test_ulids_made_within_one_millisecond_sort_in_the_order_they_were_made_even_from_many_threads() -> None:
    in_a_row = [ids.ulid(1_790_000_000_000) for _ in range(1_000)]
    assert in_a_row == sorted(in_a_row)

    made: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        for _ in range(500):
            with lock:  # the order they were made in is the order they are appended
                made.append(ids.ulid(1_790_000_000_001))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == sorted(made) and len(set(made)) == 2_000


def test_the_first_ten_characters_encode_the_millisecond() -> None:
    assert ids.ulid(0)[:10] == "0000000000"
    assert ids.ulid(2**48 - 1)[:10] == "7ZZZZZZZZZ"


def test_a_member_id_is_a_lowercase_ulid_with_its_prefix() -> None:
    assert re.match(r"^m_[0-9a-z]{26}$", ids.member_id())


def test_a_voucher_code_is_three_groups_of_four_unambiguous_characters() -> None:
    pattern = re.compile(rf"^{CODE_CHAR}{{4}}-{CODE_CHAR}{{4}}-{CODE_CHAR}{{4}}$")
    codes = [ids.voucher_code() for _ in range(2000)]

    assert all(pattern.match(code) for code in codes)
    assert len(set(codes)) == len(codes)


def test_a_referral_code_matches_what_enrollment_accepts_as_referred_by() -> None:
    from loyalty.points.members import Enrollment

    code = ids.referral_code()

    assert re.match(rf"^{CODE_CHAR}{{4}}-{CODE_CHAR}{{4}}$", code)
    assert Enrollment(external_id="c-1", referred_by=code).referred_by == code
