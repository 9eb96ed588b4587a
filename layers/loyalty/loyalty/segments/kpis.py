"""Program KPIs, overall, per tier and per segment: exact sums from ONE member item each, merged across workers.

A refresh worker calls `member_kpis` once per member item it reads (the write-time aggregates and balance counters,
never the ledger), adds the result to its `KpiTable` under the member's groups, and ships the table as JSON; the
tables merge exactly (integer and Decimal sums only), and `KpiTable.report` turns a group's sums into rates and
averages, rounded once, at the end. Periods are whole UTC calendar months ending with the as-of month, read from
the monthly maps exactly as features_of reads them. Definitions: docs/segments.md ("KPIs").
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from loyalty.points import member_record as record
from loyalty.points.member_record import month_index, month_key
from loyalty.segments.features import window_totals

ALL: Final = "all"
TIER_PREFIX: Final = "tier:"
SEGMENT_PREFIX: Final = "segment:"

RATE_PLACES: Final = 4  # rates: 0.4286 (a fraction, not a percentage)
MONEY_PLACES: Final = 2  # averages: cents

_SLUG = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_GROUP = re.compile(rf"{ALL}|{TIER_PREFIX}.+|{SEGMENT_PREFIX}{_SLUG}:{_SLUG}", re.DOTALL)
_MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"

MonthKey = Annotated[str, Field(pattern=_MONTH, description='A calendar month (UTC), "YYYY-MM".')]
Count = Annotated[int, Field(ge=0)]

# Sums of spend are exact or an error, never rounded to the default context's 28 digits (DynamoDB numbers carry 38):
# merging workers' sums must give the same total in any order. 1000 digits hold any sum of DynamoDB numbers.
_EXACT = decimal.Context(
    prec=1000,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


class KpiConfig(BaseModel):
    """How long a KPI period is. Retention compares the current period with the one just before it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period_months: int = Field(default=3, ge=1, le=12, description="Whole calendar months, the as-of month included.")


class MonthRange(BaseModel):
    """An inclusive run of calendar months, e.g. 2025-11 to 2026-01."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: MonthKey
    last: MonthKey


class KpiPeriods(BaseModel):
    """The current period (the `period_months` months ending with the as-of month) and the previous one before it.
    All members of one refresh share it; tables built for different periods refuse to merge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    as_of_month: MonthKey
    period_months: int = Field(ge=1, le=12)

    @classmethod
    def of(cls, as_of: datetime, config: KpiConfig) -> KpiPeriods:
        return cls(as_of_month=month_key(_as_of_month(as_of)), period_months=config.period_months)

    @property
    def current(self) -> MonthRange:
        last = _month_of_key(self.as_of_month)
        return MonthRange(first=month_key(last - self.period_months + 1), last=self.as_of_month)

    @property
    def previous(self) -> MonthRange:
        last = _month_of_key(self.as_of_month) - self.period_months
        return MonthRange(first=month_key(last - self.period_months + 1), last=month_key(last))


def _as_of_month(as_of: datetime) -> int:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (KPIs are computed in UTC)")
    return month_index(as_of.astimezone(UTC))


def _month_of_key(key: str) -> int:
    year, month = key.split("-")
    return int(year) * 12 + int(month) - 1


class KpiSums(BaseModel):
    """What a group's KPIs are computed from: counts and exact sums, never ratios, so workers' sums merge exactly
    (associative and commutative) and a report rounds only once, at the end."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    members: Count = 0
    active_members: Count = Field(default=0, description="Members with a purchase in the current period.")
    previous_purchasers: Count = Field(default=0, description="Members with a purchase in the previous period.")
    retained: Count = Field(default=0, description="Members with a purchase in both periods.")
    spend_current: Decimal = Field(default=Decimal(0), description="Net spend in the current period.")
    points_earned: Count = Field(default=0, description="Lifetime points earned (`lifetime_earned`).")
    points_redeemed: Count = Field(default=0, description="Lifetime points redeemed (`redeemed`).")
    points_liability: Count = Field(default=0, description="Points held: `available` + `pending`.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if max(self.active_members, self.previous_purchasers) > self.members:
            raise ValueError("active_members and previous_purchasers cannot exceed members")
        if self.retained > min(self.active_members, self.previous_purchasers):
            raise ValueError("retained members must be both active and previous purchasers")
        return self

    @classmethod
    def zero(cls) -> KpiSums:
        return _ZERO_SUMS

    def merge(self, other: KpiSums) -> KpiSums:
        return KpiSums(
            members=self.members + other.members,
            active_members=self.active_members + other.active_members,
            previous_purchasers=self.previous_purchasers + other.previous_purchasers,
            retained=self.retained + other.retained,
            spend_current=_EXACT.add(self.spend_current, other.spend_current),
            points_earned=self.points_earned + other.points_earned,
            points_redeemed=self.points_redeemed + other.points_redeemed,
            points_liability=self.points_liability + other.points_liability,
        )


_ZERO_SUMS = KpiSums()
# The column order of KpiTable's JSON rows; the document names them, and a reader refuses any other layout.
_COLUMNS: Final = tuple(KpiSums.model_fields)
_Row = tuple[StrictInt, StrictInt, StrictInt, StrictInt, StrictStr, StrictInt, StrictInt, StrictInt]


def _counter(member_item: Mapping[str, Any], name: str) -> int:
    """A balance counter as an int; absent is 0 (`pending` is not written until pending periods exist)."""
    value = member_item.get(name)
    return 0 if value is None else int(value)


def member_kpis(member_item: Mapping[str, Any], as_of: datetime, config: KpiConfig) -> KpiSums:
    """One member's contribution (members = 1) to every group they are in.

    A member is active in a period when a month of it holds a purchase (`purchases_by_month`; refunds do not take
    purchases back, so a fully refunded purchase still counts, with its spend netted to 0 in `spend_by_month`).
    Months before the previous period and after the as-of month are ignored; a key that is not "YYYY-MM" raises.
    """
    current = _as_of_month(as_of)
    span = config.period_months
    spans = (span, 2 * span)  # one month table for both maps: keys of the previous period are look-ups, not misses
    _, active_months = window_totals(member_item.get(record.PURCHASES_BY_MONTH), current, spans)
    (spend, _), _ = window_totals(member_item.get(record.SPEND_BY_MONTH), current, spans)
    active = active_months[0] > 0
    previous = active_months[1] > active_months[0]
    return KpiSums(
        members=1,
        active_members=int(active),
        previous_purchasers=int(previous),
        retained=int(active and previous),
        spend_current=spend,
        points_earned=_counter(member_item, "lifetime_earned"),
        points_redeemed=_counter(member_item, "redeemed"),
        points_liability=_counter(member_item, "available") + _counter(member_item, "pending"),
    )


class _Running:
    """A group's sums inside a table while members are added: attribute additions, about a microsecond, where
    merging frozen KpiSums would build and validate a model per member and group. Sums of valid KpiSums are valid
    (every invariant is a linear inequality), so `sums()` never fails."""

    __slots__ = _COLUMNS

    def __init__(self) -> None:
        self.members = self.active_members = self.previous_purchasers = self.retained = 0
        self.points_earned = self.points_redeemed = self.points_liability = 0
        self.spend_current = Decimal(0)

    def add(self, sums: KpiSums) -> None:
        self.members += sums.members
        self.active_members += sums.active_members
        self.previous_purchasers += sums.previous_purchasers
        self.retained += sums.retained
        self.spend_current = _EXACT.add(self.spend_current, sums.spend_current)
        self.points_earned += sums.points_earned
        self.points_redeemed += sums.points_redeemed
        self.points_liability += sums.points_liability

    def row(self) -> tuple[int, int, int, int, Decimal, int, int, int]:
        return (
            self.members,
            self.active_members,
            self.previous_purchasers,
            self.retained,
            self.spend_current,
            self.points_earned,
            self.points_redeemed,
            self.points_liability,
        )

    def sums(self) -> KpiSums:
        return KpiSums.model_validate(dict(zip(_COLUMNS, self.row(), strict=True)))


def kpi_groups(tier: str, segment_ids: Iterable[str]) -> tuple[str, ...]:
    """The group keys of a member: "all", "tier:<tier name>" and one "segment:<segment id>" per segment."""
    return (ALL, f"{TIER_PREFIX}{tier}", *(f"{SEGMENT_PREFIX}{segment}" for segment in sorted(set(segment_ids))))


def _check_group(group: str) -> str:
    if not _GROUP.fullmatch(group):
        raise ValueError(f"{group!r} is not a KPI group: 'all', 'tier:<tier name>' or 'segment:<family>:<slug>'")
    return group


def _rounded(numerator: Decimal | int, denominator: int, places: int) -> Decimal | None:
    """numerator / denominator rounded half to even to `places` decimals, exactly (no context precision); None
    when the denominator is 0."""
    if denominator == 0:
        return None
    scaled = round(Fraction(numerator) * 10**places / denominator)
    return Decimal(scaled).scaleb(-places, _EXACT)


class KpiReport(BaseModel):
    """A group's KPIs, ready for JSON and DynamoDB: every number is an int or a Decimal (boto3 refuses floats;
    pydantic writes Decimals to JSON as strings, "0.4286", "42.50"). A rate or average whose denominator is 0 is
    None."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str
    members: int
    active_members: int
    redemption_rate: Decimal | None = Field(description="Lifetime points redeemed / earned, 4 places.")
    retention_rate: Decimal | None = Field(description="Previous-period purchasers who bought again, 4 places.")
    average_spend_per_member: Decimal | None = Field(description="Current-period net spend / members, cents.")
    average_spend_per_active_member: Decimal | None = Field(description="... / active members, cents.")
    points_liability: int
    period_months: int
    current_period: MonthRange
    previous_period: MonthRange


class KpiTable(Mapping[str, KpiSums]):
    """Group key -> KpiSums, bound to the periods its members' sums were computed for.

    A worker makes one with `KpiTable.of(as_of, config)` and `add`s each member under their groups (in place: this
    is the per-member loop). `merge` gives a new table and refuses tables of different periods; `KpiTable()` is the
    empty, unbound table, the identity of merge (a reduce may start from it) that takes on the periods of what it
    is merged with, and refuses `add` and `report`. `to_json` / `from_json` round-trip exactly.
    """

    __slots__ = ("_groups", "_periods")

    def __init__(self, periods: KpiPeriods | None = None, groups: Mapping[str, KpiSums] | None = None) -> None:
        if periods is None and groups:
            raise ValueError("a KPI table holding groups must know its periods")
        self._periods = periods
        self._groups: dict[str, _Running] = {}
        for group, sums in (groups or {}).items():
            self._running(_check_group(group)).add(sums)

    @classmethod
    def of(cls, as_of: datetime, config: KpiConfig) -> KpiTable:
        return cls(KpiPeriods.of(as_of, config))

    @property
    def periods(self) -> KpiPeriods | None:
        return self._periods

    def __getitem__(self, group: str) -> KpiSums:
        return self._groups[group].sums()

    def __iter__(self) -> Iterator[str]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KpiTable):
            return NotImplemented
        return self._periods == other._periods and self._rows() == other._rows()

    def __repr__(self) -> str:
        return f"KpiTable({self._periods!r}, {len(self._groups)} groups)"

    def _rows(self) -> dict[str, tuple[int, int, int, int, Decimal, int, int, int]]:
        return {group: running.row() for group, running in self._groups.items()}

    def _running(self, group: str) -> _Running:
        running = self._groups.get(group)
        if running is None:
            running = self._groups[group] = _Running()
        return running

    def groups(self) -> tuple[str, ...]:
        """The group keys, sorted ("all" sorts first)."""
        return tuple(sorted(self._groups))

    def add(self, groups: Iterable[str], sums: KpiSums) -> None:
        """Add `sums` to each group (a group seen for the first time starts at zero; adding KpiSums.zero() lists a
        group that must be reported even when empty). A group named twice is refused: it would count twice."""
        if self._periods is None:
            raise ValueError("this KPI table has no periods: make it with KpiTable.of(as_of, config)")
        keys = tuple(groups)
        if len(set(keys)) != len(keys):
            raise ValueError(f"a member's groups repeat: {sorted({k for k in keys if keys.count(k) > 1})}")
        for group in keys:
            running = self._groups.get(group)
            if running is None:
                running = self._groups[_check_group(group)] = _Running()
            running.add(sums)

    def merge(self, other: KpiTable) -> KpiTable:
        if self._periods is not None and other._periods is not None and self._periods != other._periods:
            raise ValueError(f"cannot merge KPI tables of different periods: {self._periods} and {other._periods}")
        merged = KpiTable(self._periods or other._periods)
        for table in (self, other):
            for group, running in table._groups.items():
                merged._running(group).add(running.sums())
        return merged

    def report(self, group: str) -> KpiReport:
        """The group's KPIs; a group nobody was added to reports 0 members (an empty segment is a fact)."""
        if self._periods is None:
            raise ValueError("this KPI table has no periods to report on: make it with KpiTable.of(as_of, config)")
        running = self._groups.get(_check_group(group))
        sums = _ZERO_SUMS if running is None else running.sums()
        return KpiReport(
            group=group,
            members=sums.members,
            active_members=sums.active_members,
            redemption_rate=_rounded(sums.points_redeemed, sums.points_earned, RATE_PLACES),
            retention_rate=_rounded(sums.retained, sums.previous_purchasers, RATE_PLACES),
            average_spend_per_member=_rounded(sums.spend_current, sums.members, MONEY_PLACES),
            average_spend_per_active_member=_rounded(sums.spend_current, sums.active_members, MONEY_PLACES),
            points_liability=sums.points_liability,
            period_months=self._periods.period_months,
            current_period=self._periods.current,
            previous_period=self._periods.previous,
        )

    def to_json(self) -> str:
        """Compact: the periods, the column names once, then one row of numbers per group (sorted); spend as a
        decimal string, so that no reader turns it into a float."""
        rows = {
            group: [str(value) if isinstance(value, Decimal) else value for value in running.row()]
            for group, running in sorted(self._groups.items())
        }
        periods = self._periods.model_dump() if self._periods else {"as_of_month": None, "period_months": None}
        document = {**periods, "columns": _COLUMNS, "groups": rows}
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> KpiTable:
        document = _TableDocument.model_validate_json(text)
        if document.columns != _COLUMNS:
            raise ValueError(f"KPI table columns are {document.columns}, expected {_COLUMNS}")
        periods = None
        if document.as_of_month is not None or document.period_months is not None:
            periods = KpiPeriods.model_validate(
                {"as_of_month": document.as_of_month, "period_months": document.period_months}
            )
        groups = {
            group: KpiSums.model_validate(dict(zip(_COLUMNS, row, strict=True)))
            for group, row in document.groups.items()
        }
        return cls(periods, groups)


class _TableDocument(BaseModel):
    """KpiTable's JSON, read strictly: counts must be JSON integers and spend a decimal string, never a float."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    as_of_month: str | None
    period_months: StrictInt | None
    columns: tuple[str, ...]
    groups: dict[str, _Row]
