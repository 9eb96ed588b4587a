"""Category affinity, written at purchase time: how a line item's category is named, what an order adds to each
category, which categories a member item keeps by name, and what a refund takes back. Pure; no AWS.

The member item keeps lifetime net spend per category in `spend_by_category` (at most MAX_CATEGORIES names) and
the categorised spend that did not fit in `spend_other_categories`; the order item remembers what the order added
(`category_totals`, `other_categories_total`), so that a refund takes back exactly its share. Policies and the
reasons for them: docs/segments.md ("Category affinity"), docs/data-model.md.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

MAX_CATEGORIES = 50  # categories one member item keeps by name; also the most one order adds by name
CATEGORY_MAP = "spend_by_category"  # member item: normalised category -> lifetime net spend
OTHER_CATEGORIES = "spend_other_categories"  # member item: categorised net spend beyond the kept names
_ZERO = Decimal(0)
_QUANTUM = 1000  # refund shares are rounded down to 0.001, the finest amount the API accepts


class _CategorisedLine(Protocol):
    @property
    def category(self) -> str | None: ...

    @property
    def amount(self) -> Decimal: ...


def category_name(raw: str | None) -> str | None:
    """The one spelling of a category: Unicode NFKC, case-folded, trimmed, inner runs of whitespace made one space.
    "  Skin  Care" and "SKIN CARE" are both "skin care". None when nothing is left (an uncategorised line)."""
    if raw is None:
        return None
    name = " ".join(unicodedata.normalize("NFKC", raw).casefold().split())
    return name or None


def _by_spend(totals: Mapping[str, Decimal]) -> list[str]:
    """Names by amount, largest first; equal amounts by name (code point order), so every choice is reproducible."""
    return sorted(totals, key=lambda name: (-totals[name], name))


@dataclass(frozen=True)
class OrderCategories:
    """What one order adds: its line total per category (the MAX_CATEGORIES largest), and the categorised rest."""

    totals: dict[str, Decimal] = field(default_factory=dict)
    other: Decimal = _ZERO

    def converted(self, convert: Callable[[Decimal], Decimal]) -> OrderCategories:
        """Every amount converted (to the program's base currency, at the purchase's rate); a category that
        converts to 0 is left out, as one whose lines total 0 is."""
        totals = {name: convert(total) for name, total in self.totals.items()}
        return OrderCategories({name: total for name, total in totals.items() if total > 0}, convert(self.other))


def order_categories(lines: Iterable[_CategorisedLine]) -> OrderCategories:
    """Line amounts summed per normalised category. Lines without a category add to nothing, and a category whose
    lines total 0 is not kept. Past MAX_CATEGORIES names, the smallest categories are summed into `other`."""
    totals: dict[str, Decimal] = {}
    for line in lines:
        name = category_name(line.category)
        if name is not None:
            totals[name] = totals.get(name, _ZERO) + line.amount
    ranked = [name for name in _by_spend(totals) if totals[name] > 0]
    kept = {name: totals[name] for name in ranked[:MAX_CATEGORIES]}
    other = sum((totals[name] for name in ranked[MAX_CATEGORIES:]), _ZERO)
    return OrderCategories(kept, other)


@dataclass(frozen=True)
class CategoryPlacement:
    """Where a purchase's category spend goes on a member item whose map was read (`seen`)."""

    kept: dict[str, Decimal]  # added to spend_by_category, by name
    new: frozenset[str]  # the names of `kept` that the map did not hold
    other: Decimal  # added to spend_other_categories
    create: bool  # the item has no map yet (enrolled before category affinity): the purchase creates it
    seen_size: int  # how many names the map held when read


def fits(order: OrderCategories, seen: Mapping[str, Any] | None) -> bool:
    """Whether the purchase's one-round-trip update applies to a map as read: every name is already kept, or
    the map has room for all of them. (The update's condition says the same inside DynamoDB.)"""
    if seen is None:
        return not order.totals
    return all(name in seen for name in order.totals) or len(seen) + len(order.totals) <= MAX_CATEGORIES


def place(order: OrderCategories, seen: Mapping[str, Any] | None) -> CategoryPlacement:
    """The exact placement against the map as read: names it holds keep adding there; new names take the room
    left, largest first (then by name); the rest, and the order's own `other`, go to spend_other_categories."""
    if seen is None:
        return CategoryPlacement(dict(order.totals), frozenset(order.totals), order.other, True, 0)
    kept = {name: amount for name, amount in order.totals.items() if name in seen}
    room = max(0, MAX_CATEGORIES - len(seen))
    fresh = [name for name in _by_spend(order.totals) if name not in seen]
    kept.update({name: order.totals[name] for name in fresh[:room]})
    other = order.other + sum((order.totals[name] for name in fresh[room:]), _ZERO)
    return CategoryPlacement(kept, frozenset(fresh[:room]), other, False, len(seen))


def _share(total: Decimal, refunded: Decimal, amount: Decimal) -> Fraction:
    """total x refunded / amount, rounded down to 0.001, exactly (rational arithmetic, no decimal context)."""
    exact = Fraction(total) * Fraction(refunded) / Fraction(amount)
    return Fraction(math.floor(exact * _QUANTUM), _QUANTUM)


def _decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)  # a multiple of 0.001: exact


def refund_share(total: Decimal, order_amount: Decimal, refunded_before: Decimal, refund_amount: Decimal) -> Decimal:
    """What a refund takes back of one total the order added (a category's, or its spend in the base currency):
        floor3(total x (refunded_before + refund) / order_amount) - floor3(total x refunded_before / order_amount)
    >= 0; an order's takes add up to the total exactly once it is refunded in full."""
    after = refunded_before + refund_amount
    return _decimal(_share(total, after, order_amount) - _share(total, refunded_before, order_amount))


def refund_shares(
    order: OrderCategories, order_amount: Decimal, refunded_before: Decimal, refund_amount: Decimal
) -> OrderCategories:
    """What a refund takes back of each of the order's categories, on the running total (as the points are):
        take = floor3(total x (refunded_before + refund) / order_amount) - floor3(total x refunded_before / order_amount)
    Each take is >= 0, the takes of an order's refunds add up to at most the total, and to exactly the total once
    the order is refunded in full, however the refunds were split."""

    def take(total: Decimal) -> Decimal:
        return refund_share(total, order_amount, refunded_before, refund_amount)

    totals = {name: take(total) for name, total in order.totals.items()}
    return OrderCategories({name: value for name, value in totals.items() if value > 0}, take(order.other))


def taken_from_member(
    shares: OrderCategories, seen: Mapping[str, Any] | None, seen_other: Any
) -> tuple[dict[str, Decimal], Decimal]:
    """Where a refund's shares come from on the member item as read: a name the map holds gives back from it,
    any other from spend_other_categories (where the purchase put it, the map having been full; names are never
    removed, so that is still true). Never more than is there: nothing goes below 0."""
    held = seen or {}
    by_name: dict[str, Decimal] = {}
    other = shares.other
    for name, take in shares.totals.items():
        if name in held:
            by_name[name] = min(take, max(_ZERO, Decimal(held[name])))
        else:
            other += take
    other = min(other, max(_ZERO, Decimal(seen_other or 0)))
    return {name: take for name, take in by_name.items() if take > 0}, other
