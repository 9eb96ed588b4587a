"""docs/segments.md stays true to the code: the fields marketers may use are exactly the rule language's fields."""

from __future__ import annotations

from pathlib import Path

from loyalty.segments.rfm import DEFAULT_RFM_SEGMENTS
from loyalty.segments.rules import FIELD_FAMILIES, OPTIONAL_FIELDS, RULE_FIELDS

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "segments.md").read_text()


def fields_table() -> dict[str, str]:
    """The "documented member fields" table: field name -> its "may be missing" column."""
    section = DOCS.split("## Documented member fields", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    return {row[1].strip().strip("`"): row[3].strip() for row in rows}


FAMILY_ROWS = {f"{family}.<category>" for family in FIELD_FAMILIES}


def test_every_rule_field_is_documented_and_every_documented_field_is_a_rule_field() -> None:
    documented = fields_table()

    assert sorted(documented) == sorted([*RULE_FIELDS, *FAMILY_ROWS])
    assert "member_id" not in RULE_FIELDS
    assert "categories" not in RULE_FIELDS  # read through the category families, not a field of its own


def test_the_fields_documented_as_possibly_missing_are_the_optional_ones() -> None:
    documented = fields_table()

    assert {name for name, missing in documented.items() if missing.startswith("yes")} == OPTIONAL_FIELDS | FAMILY_ROWS


def test_the_documented_segment_map_is_the_default() -> None:
    for segment in DEFAULT_RFM_SEGMENTS:
        low_r, high_r = segment.r
        low_fm, high_fm = segment.fm
        r = str(low_r) if low_r == high_r else f"{low_r}-{high_r}"
        fm = str(low_fm) if low_fm == high_fm else f"{low_fm}-{high_fm}"
        assert f"| {segment.name} | `{segment.segment_id}` | {r} | {fm} |" in DOCS
