"""The marketer rule language: validation errors that name the JSON path, evaluation, and its algebra."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from loyalty.core.errors import InvalidRequest
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import CategorySpend, ConsentFlags, MemberFeatures
from loyalty.segments.rules import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    RULE_FIELDS,
    InvalidRule,
    SegmentDefinition,
    evaluate,
    parse_rule,
    rule_document,
)


def member(**fields: Any) -> MemberFeatures:
    values: dict[str, Any] = {
        "member_id": "m",
        "recency_days": 12,
        "frequency": 4,
        "monetary": Decimal("250.10"),
        "purchases_6m": 3,
        "purchases_12m": 4,
        "spend_6m": Decimal("180.00"),
        "spend_12m": Decimal("250.10"),
        "points_6m": 520,
        "points_12m": 700,
        "active_months_6m": 3,
        "purchase_count": 9,
        "days_since_enrolled": 800,
        "days_since_first_purchase": 700,
        "tier": "VIB",
        "country": "FR",
        "age": 34,
        "consent": ConsentFlags(email=True),
        "available_points": 300,
        "lifetime_points": 2000,
    }
    values.update(fields)
    return MemberFeatures(**values)


def cond(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value} if value is not None else {"field": field, "op": op}


def problems_of(document: Any) -> list[str]:
    with pytest.raises(InvalidRule) as refused:
        parse_rule(document)
    return [f"{p.path}: {p.reason}" for p in refused.value.problems]


# ---- validation -----------------------------------------------------------------------------------------------


def test_a_value_of_the_wrong_type_is_named_by_its_json_path() -> None:
    document = {"all": [cond("tier", "=", "VIB"), cond("age", ">=", 18), cond("points_6m", ">", "500")]}

    assert problems_of(document) == ["rule.all[2].value: points_6m takes a number"]


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (cond("point_6m", ">", 5), "rule.field: unknown field 'point_6m' (did you mean points_6m?)"),
        (cond("points_6m", "=>", 5), "rule.op: unknown op '=>'; ops are = != > >= < <= in not_in between exists"),
        (cond("tier", ">", "VIB"), "rule.op: > does not apply to tier, which takes a string"),
        (cond("consent.email", "=", "yes"), "rule.value: consent.email takes true or false"),
        (cond("consent.email", "=", 1), "rule.value: consent.email takes true or false"),
        (cond("points_6m", "=", True), "rule.value: points_6m takes a number"),
        (cond("country", "=", 33), "rule.value: country takes a string"),
        (cond("monetary", ">", 1e300), "rule.value: monetary takes numbers between -1e15 and 1e15"),
        (cond("age", "in", [3, Decimal("1e999")]), "rule.value: age takes numbers between -1e15 and 1e15"),
        (cond("age", "between", [40, 30]), "rule.value: age between takes [low, high] with low <= high, got [40, 30]"),
        (cond("age", "between", [30]), "rule.value: age between takes [low, high], two numbers"),
        (cond("country", "in", []), "rule.value: country in takes a list of 1 to 1000 strings"),
        (cond("country", "not_in", ["FR", 3]), "rule.value: country not_in takes a list of strings"),
        (cond("age", "exists", "no"), "rule.value: exists takes true or false (true when left out)"),
        ({"field": "age", "op": ">"}, "rule.value: age takes a number"),
        ({"field": "age", "value": 3}, "rule.op: required"),
        ({"any": [cond("age", ">", 3)], "also": 1}, "rule.also: unexpected key"),
        ({"not": [cond("age", ">", 3)]}, "rule.not: " + 'a rule is {"all": [...]}, {"any": [...]}, {"not": {...}} or '
         '{"field": ..., "op": ..., "value": ...}'),
        ({"all": cond("age", ">", 3)}, "rule.all: should be a list"),
        ([cond("age", ">", 3)], 'rule: a rule is {"all": [...]}, {"any": [...]}, {"not": {...}} or '
         '{"field": ..., "op": ..., "value": ...}'),
    ],
)  # fmt: skip
def test_validation_errors_name_the_path_and_the_reason(document: Any, problem: str) -> None:
    assert problems_of(document) == [problem]


def test_every_problem_is_reported_at_once_with_nested_paths() -> None:
    document = {"any": [{"not": cond("tier", "<", 3)}, {"all": [cond("age", ">", 3), cond("nope", "=", 1)]}]}

    assert problems_of(document) == [
        "rule.any[0].not.op: < does not apply to tier, which takes a string",
        "rule.any[1].all[1].field: unknown field 'nope' (see the documented member fields)",
    ]


def nested(depth: int) -> dict[str, Any]:
    rule: dict[str, Any] = cond("age", "exists")
    for _ in range(depth - 1):
        rule = {"all": [rule]}
    return rule


def test_rules_nest_up_to_eight_levels() -> None:
    parse_rule(nested(MAX_DEPTH))

    assert problems_of(nested(MAX_DEPTH + 1)) == ["rule" + ".all[0]" * MAX_DEPTH + ": rules nest at most 8 levels deep"]


def test_a_very_deep_document_is_refused_without_recursing_into_it() -> None:
    assert problems_of(nested(5000))[0].endswith("rules nest at most 8 levels deep")


def test_a_rule_holds_at_most_one_hundred_conditions() -> None:
    parse_rule({"any": [cond("age", ">", i) for i in range(MAX_CONDITIONS)]})

    assert problems_of({"any": [cond("age", ">", i) for i in range(MAX_CONDITIONS + 1)]}) == [
        "rule: a rule holds at most 100 conditions"
    ]


def test_a_segment_definition_reports_its_own_fields_and_the_rules_paths() -> None:
    with pytest.raises(InvalidRule) as refused:
        SegmentDefinition.parse(
            {"segment_id": "Win Back", "name": "", "rule": {"all": [cond("points_6m", ">", "500")]}, "version": 0}
        )

    paths = [p.path for p in refused.value.problems]
    assert paths == ["segment_id", "name", "rule.all[0].value", "version"]
    assert refused.value.problems[0].reason.startswith("'Win Back' is not a slug")


def test_an_invalid_rule_is_a_422_with_every_field_in_the_body() -> None:
    with pytest.raises(InvalidRule) as refused:
        SegmentDefinition.parse({"segment_id": "x", "name": "X", "rule": nested(MAX_DEPTH + 1)})

    assert isinstance(refused.value, InvalidRequest) and refused.value.status == 422
    body = refused.value.body()
    assert body["code"] == "invalid_segment"
    assert body["errors"] == [{"field": "rule" + ".all[0]" * 8, "reason": "rules nest at most 8 levels deep"}]


def test_a_definition_survives_a_json_round_trip_as_written() -> None:
    document = {
        "segment_id": "win-back-fr",
        "name": "Win back, France",
        "description": "Lapsed French members who said yes to email",
        "rule": {
            "all": [
                cond("country", "=", "FR"),
                cond("consent.email", "=", True),
                {"not": cond("recency_days", "<=", 90)},
                {"any": [cond("spend_12m", ">=", 99.9), cond("tier", "in", ["VIB", "Rouge"])]},
                cond("age", "between", [25, 44]),
                cond("age", "exists", True),
            ]
        },
        "version": 3,
    }

    definition = SegmentDefinition.parse(document)

    assert definition.document() == document
    assert SegmentDefinition.parse(json.loads(json.dumps(definition.document()))) == definition


def test_numbers_read_back_from_dynamodb_as_decimals_are_accepted() -> None:
    rule = parse_rule({"field": "monetary", "op": ">=", "value": Decimal("250.1")})

    assert rule_document(rule) == {"field": "monetary", "op": ">=", "value": 250.1}
    assert evaluate(rule, member())


# ---- evaluation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (cond("points_6m", ">", 500), True),
        (cond("points_6m", ">", 520), False),
        (cond("points_6m", ">=", 520), True),
        (cond("points_6m", "<", 520), False),
        (cond("points_6m", "<=", 520), True),
        (cond("points_6m", "=", 520), True),
        (cond("points_6m", "!=", 520), False),
        (cond("monetary", "=", 250.1), True),  # compared as decimals: 250.1 is 250.10
        (cond("monetary", ">", 250.09), True),
        (cond("tier", "in", ["VIB", "Rouge"]), True),
        (cond("tier", "not_in", ["VIB", "Rouge"]), False),
        (cond("tier", "=", "vib"), False),  # strings are case-sensitive
        (cond("age", "between", [34, 40]), True),
        (cond("age", "between", [18, 33.5]), False),
        (cond("consent.email", "=", True), True),
        (cond("consent.sms", "=", True), False),
        (cond("age", "exists"), True),
        (cond("age", "exists", False), False),
        (cond("frequency", "in", [1, 4.0]), True),
    ],
)
def test_each_op_compares_the_members_field(condition: dict[str, Any], holds: bool) -> None:
    assert evaluate(parse_rule(condition), member()) is holds


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (cond("recency_days", "<", 30), False),
        (cond("recency_days", ">", 30), False),
        (cond("recency_days", "=", 0), False),
        (cond("recency_days", "between", [0, 10_000]), False),
        (cond("recency_days", "in", [1, 2]), False),
        (cond("recency_days", "not_in", [1, 2]), False),
        (cond("recency_days", "!=", 5), True),
        (cond("recency_days", "exists"), False),
        (cond("recency_days", "exists", False), True),
        ({"not": cond("recency_days", "<", 30)}, True),
    ],
)
def test_a_missing_value_satisfies_no_comparison_but_not_equal_and_exists_false(
    condition: dict[str, Any], holds: bool
) -> None:
    never_bought = member(recency_days=None, days_since_first_purchase=None)

    assert evaluate(parse_rule(condition), never_bought) is holds


def test_empty_all_is_true_and_empty_any_is_false() -> None:
    assert evaluate(parse_rule({"all": []}), member()) is True
    assert evaluate(parse_rule({"any": []}), member()) is False


# ---- the algebra, on random rules and members -----------------------------------------------------------------

_number_fields = sorted(name for name, kind in RULE_FIELDS.items() if kind == "number")
_leaves = st.one_of(
    st.builds(
        cond,
        st.sampled_from(_number_fields),
        st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "exists"]),
        st.integers(-5, 600),
    ).map(lambda c: {**c, "value": True} if c["op"] == "exists" else c),
    st.builds(cond, st.just("tier"), st.sampled_from(["=", "!=", "in", "not_in"]), st.just("VIB")).map(
        lambda c: {**c, "value": [c["value"]]} if c["op"] in ("in", "not_in") else c
    ),
    st.builds(cond, st.sampled_from(["consent.email", "consent.sms"]), st.just("="), st.booleans()),
    st.builds(
        cond,
        st.sampled_from(["category_spend.makeup", "category_spend.hair", "category_share.makeup"]),
        st.sampled_from(["=", "!=", ">", "<=", "exists"]),
        st.sampled_from([0, 0.5, 1, 30]),
    ).map(lambda c: {**c, "value": True} if c["op"] == "exists" else c),
    st.builds(cond, st.just("top_category"), st.sampled_from(["=", "!=", "exists"]), st.just("makeup")).map(
        lambda c: {**c, "value": False} if c["op"] == "exists" else c
    ),
)
rules = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda rs: {"all": rs}),
        st.lists(children, max_size=3).map(lambda rs: {"any": rs}),
        children.map(lambda r: {"not": r}),
    ),
    max_leaves=12,
)
members = st.builds(
    member,
    recency_days=st.one_of(st.none(), st.integers(0, 600)),
    points_6m=st.integers(0, 600),
    age=st.one_of(st.none(), st.integers(0, 99)),
    tier=st.sampled_from(["Insider", "VIB"]),
    consent=st.builds(ConsentFlags, email=st.booleans(), sms=st.booleans()),
    categories=st.builds(
        CategorySpend,
        by_category=st.dictionaries(
            st.sampled_from(["makeup", "skin care"]), st.sampled_from([Decimal(0), Decimal(30)])
        ),
        other=st.sampled_from([Decimal(0), Decimal(5)]),
    ),
    top_category=st.sampled_from([None, "makeup", "skin care"]),
)


def _depth(document: Any) -> int:
    if "all" in document or "any" in document:
        return 1 + max((_depth(child) for child in document.get("all", document.get("any"))), default=0)
    return 1 + _depth(document["not"]) if "not" in document else 1


@given(rules, members)
@settings(max_examples=300, database=None, deadline=None)
def test_not_is_the_complement_and_groups_are_all_and_any_of_their_rules(
    document: dict[str, Any], features: MemberFeatures
) -> None:
    assume(_depth(document) <= MAX_DEPTH - 2)  # the groups below add two levels
    rule = parse_rule(document)
    children = [document, {"not": document}]

    assert evaluate(parse_rule({"not": document}), features) is (not evaluate(rule, features))
    assert evaluate(parse_rule({"all": children}), features) is False
    assert evaluate(parse_rule({"any": children}), features) is True
    assert rule_document(rule) == document


def test_a_document_with_grouped_rules_round_trips_through_its_json() -> None:
    # Given a stored document whose rule segment nests all / any / not
    rule = {
        "all": [
            {"field": "tier", "op": "in", "value": ["VIB", "Rouge"]},
            {
                "any": [
                    {"field": "spend_12m", "op": ">=", "value": 250},
                    {"not": {"field": "country", "op": "=", "value": "FR"}},
                ]
            },
        ]
    }
    config = SegmentationConfig(
        rule_segments=(SegmentDefinition.parse({"segment_id": "vip", "name": "VIP", "rule": rule}),)
    )
    # When it is written as JSON (as the store writes it) and read back
    again = SegmentationConfig.model_validate_json(config.model_dump_json())
    # Then it is the same document, and the JSON speaks the rule language, not field names
    assert again == config
    assert again.rule_segments[0].document()["rule"] == rule
    assert '"rules"' not in config.model_dump_json()


# ---- category affinity ----------------------------------------------------------------------------------------


def buyer(spend: dict[str, str], other: str = "0") -> MemberFeatures:
    categories = CategorySpend(by_category={k: Decimal(v) for k, v in spend.items()}, other=Decimal(other))
    return member(categories=categories, top_category=categories.top())


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (cond("category_spend.makeup", ">=", 60), True),
        (cond("category_spend.makeup", ">", 60), False),
        (cond("category_spend.skin care", "between", [20, 40]), True),
        (cond("category_spend.hair", "=", 0), True),  # never bought: 0, not missing
        (cond("category_spend.hair", "exists"), True),
        (cond("category_share.makeup", "=", 0.6), True),
        (cond("category_share.makeup", ">", 0.5), True),
        (cond("category_share.hair", "<", 0.1), True),
        (cond("top_category", "=", "makeup"), True),
        (cond("top_category", "in", ["skin care", "hair"]), False),
        (cond("category_spend.bath.body", "=", 10), True),  # a category name may hold a dot
    ],
)
def test_category_fields_compare_the_members_category_spend(condition: dict[str, Any], holds: bool) -> None:
    features = buyer({"makeup": "60.00", "skin care": "30", "bath.body": "10"})

    assert evaluate(parse_rule(condition), features) is holds


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (cond("category_share.makeup", ">=", 0), False),
        (cond("category_share.makeup", "exists", False), True),
        (cond("top_category", "=", "makeup"), False),
        (cond("top_category", "!=", "makeup"), True),
        (cond("category_spend.makeup", "=", 0), True),
    ],
)
def test_a_member_with_no_categorised_spend_has_no_share_and_no_top_category(
    condition: dict[str, Any], holds: bool
) -> None:
    assert evaluate(parse_rule(condition), buyer({})) is holds


def test_past_the_bound_an_unnamed_categorys_spend_is_missing_and_compares_like_any_missing_value() -> None:
    full = buyer({f"c{i:02d}": "1" for i in range(49)} | {"makeup": "30"}, other="12")

    assert evaluate(parse_rule(cond("category_spend.makeup", "=", 30)), full)
    assert not evaluate(parse_rule(cond("category_spend.hair", "=", 0)), full)
    assert not evaluate(parse_rule(cond("category_spend.hair", "<", 1000)), full)
    assert evaluate(parse_rule(cond("category_spend.hair", "!=", 0)), full)
    assert evaluate(parse_rule(cond("category_spend.hair", "exists", False)), full)
    assert evaluate(parse_rule({"not": cond("category_share.hair", ">", 0.5)}), full)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (cond("category_spend.Makeup", ">", 0), "rule.field: category names are written as stored (case-folded, "
         "trimmed, single spaces): category_spend.makeup, not category_spend.Makeup"),
        (cond("category_share.skin  care", ">", 0), "rule.field: category names are written as stored (case-folded, "
         "trimmed, single spaces): category_share.skin care, not category_share.skin  care"),
        (cond("category_spend.", ">", 0), "rule.field: category_spend.<category> takes a category name, got ''"),
        (cond("category_spend. ", ">", 0), "rule.field: category_spend.<category> takes a category name, got ' '"),
        (cond("category_spend." + "x" * 201, ">", 0), "rule.field: a category name is at most 200 characters"),
        (cond("category_spends.makeup", ">", 0),
         "rule.field: unknown field 'category_spends.makeup' (did you mean category_spend.makeup?)"),
        (cond("category_spend", ">", 0), "rule.field: unknown field 'category_spend' (did you mean "
         "category_spend.<category>?)"),
        (cond("category_share.makeup", ">", "half"), "rule.value: category_share.makeup takes a number"),
        (cond("top_category", ">", "makeup"), "rule.op: > does not apply to top_category, which takes a string"),
        (cond("top_category", "=", "Makeup"), "rule.value: category names are written as stored (case-folded, "
         "trimmed, single spaces): 'makeup', not 'Makeup'"),
        (cond("top_category", "not_in", ["makeup", " hair"]), "rule.value: category names are written as stored "
         "(case-folded, trimmed, single spaces): 'hair', not ' hair'"),
        (cond("top_category", "=", "  "), "rule.value: top_category takes a category name, got '  '"),
    ],
)  # fmt: skip
def test_category_names_in_rules_are_validated_with_their_path(document: Any, problem: str) -> None:
    assert problems_of(document) == [problem]


def test_a_bad_category_deep_in_a_segment_definition_is_a_422_naming_its_path() -> None:
    document = {"any": [cond("tier", "=", "VIB"), {"not": cond("category_share.Make Up", ">", 0.5)}]}

    with pytest.raises(InvalidRule) as refused:
        SegmentDefinition.parse({"segment_id": "makeup-fans", "name": "Makeup fans", "rule": document})

    assert refused.value.status == 422
    assert refused.value.body()["errors"] == [
        {
            "field": "rule.any[1].not.field",
            "reason": "category names are written as stored (case-folded, trimmed, single spaces): "
            "category_share.make up, not category_share.Make Up",
        }
    ]


def test_a_category_rule_round_trips_and_equal_conditions_are_equal() -> None:
    document = {
        "segment_id": "makeup-fans",
        "name": "Makeup fans",
        "rule": {
            "all": [
                cond("category_spend.makeup", ">=", 100),
                cond("category_share.makeup", ">=", 0.25),
                cond("top_category", "in", ["makeup", "skin care"]),
            ]
        },
    }

    definition = SegmentDefinition.parse(document)

    assert definition.document()["rule"] == document["rule"]
    assert SegmentDefinition.parse(json.loads(json.dumps(definition.document()))) == definition
    assert parse_rule(cond("category_spend.makeup", ">", 1)) == parse_rule(cond("category_spend.makeup", ">", 1))
    assert parse_rule(cond("category_spend.makeup", ">", 1)) != parse_rule(cond("category_share.makeup", ">", 1))
