"""The service's pure parts: request fingerprints (what makes a replay a replay) and the configuration cache."""

from __future__ import annotations

from decimal import Decimal

from loyalty.core.caching import TtlCache
from loyalty.core.idempotency import fingerprint


def test_equal_amounts_written_differently_have_one_fingerprint() -> None:
    assert fingerprint("m_1", Decimal("42"), "USD") == fingerprint("m_1", Decimal("42.00"), "USD")
    assert fingerprint("m_1", Decimal("42"), "USD") == fingerprint("m_1", Decimal("4.2E+1"), "USD")


def test_any_fact_that_differs_changes_the_fingerprint() -> None:
    base = fingerprint("m_1", Decimal("42"), "USD")

    assert fingerprint("m_2", Decimal("42"), "USD") != base
    assert fingerprint("m_1", Decimal("42.01"), "USD") != base
    assert fingerprint("m_1", Decimal("42"), "EUR") != base


def test_a_fingerprint_does_not_depend_on_key_order() -> None:
    assert fingerprint({"a": 1, "b": Decimal("2.0")}) == fingerprint({"b": Decimal(2), "a": 1})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_configuration_cache_loads_once_per_window() -> None:
    loads: list[int] = []
    clock = Clock()
    cache = TtlCache(lambda: loads.append(1) or len(loads), 60, clock=clock)

    assert [cache.get(), cache.get()] == [1, 1]
    clock.now = 60.0
    assert cache.get() == 1  # still inside the window
    clock.now = 60.5
    assert cache.get() == 2  # expired: loaded again


def test_clearing_the_cache_makes_the_next_read_load_afresh() -> None:
    loads: list[int] = []
    cache = TtlCache(lambda: loads.append(1) or len(loads), 60, clock=Clock())
    cache.get()

    cache.clear()

    assert cache.get() == 2
