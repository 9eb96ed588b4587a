"""The marketer rule language: segments defined as JSON data, validated with errors that name the JSON path.

    rule      := {"all": [rule, ...]} | {"any": [rule, ...]} | {"not": rule} | condition
    condition := {"field": <documented field>, "op": <op>, "value": <JSON value>}
    op        := = != > >= < <= in not_in between exists

Fields are the documented MemberFeatures fields (docs/segments.md), `consent.<channel>`, and the category families
`category_spend.<category>` and `category_share.<category>` (a category name as the store keeps it). A missing value
(a member who never purchased has no recency_days) satisfies no comparison except `!=` and `exists: false`; `not`
is the exact complement of its rule. Grammar, limits and error examples: docs/segments.md.
"""

from __future__ import annotations

import difflib
import operator
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from loyalty.core.errors import InvalidRequest
from loyalty.points.categories import category_name
from loyalty.segments.features import MemberFeatures
from loyalty.segments.ids import Slug

MAX_DEPTH = 8  # a lone condition is depth 1; {"all": [condition]} is depth 2
MAX_CONDITIONS = 100
MAX_NODES = 200  # conditions and groups together: a wall of empty groups is refused too
MAX_LIST_VALUES = 1000
MAX_STRING_LENGTH = 200
MAX_NUMBER = Decimal("1e15")  # far beyond any points, spend or day count; keeps absurd exponents out

FieldKind = Literal["number", "string", "boolean"]
_KIND_OF_TYPE: dict[type, FieldKind] = {int: "number", Decimal: "number", str: "string", bool: "boolean"}
_TAKES = {"number": "a number", "string": "a string", "boolean": "true or false"}
_NOT_RULE_FIELDS = frozenset({"member_id", "categories"})  # categories: read by the families below


def _fields_of(model: type[BaseModel], prefix: str = "") -> dict[str, tuple[FieldKind, bool]]:
    """name -> (kind, may be missing), read from the model so the language and the features never drift apart."""
    found: dict[str, tuple[FieldKind, bool]] = {}
    for name, info in model.model_fields.items():
        if not prefix and name in _NOT_RULE_FIELDS:
            continue
        annotation = info.annotation
        optional = False
        if get_origin(annotation) in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            optional = len(members) < len(get_args(annotation))
            (annotation,) = members
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.update(_fields_of(annotation, f"{prefix}{name}."))
        elif isinstance(annotation, type) and annotation in _KIND_OF_TYPE:
            found[prefix + name] = (_KIND_OF_TYPE[annotation], optional)
        else:  # pragma: no cover - a new feature of a type the language cannot compare
            raise TypeError(f"MemberFeatures.{prefix}{name} has a type the rule language does not know")
    return found


_FIELDS = _fields_of(MemberFeatures)
RULE_FIELDS: Mapping[str, FieldKind] = types.MappingProxyType({name: kind for name, (kind, _) in _FIELDS.items()})
OPTIONAL_FIELDS = frozenset(name for name, (_, optional) in _FIELDS.items() if optional)

_GETTERS = {name: operator.attrgetter(name) for name in RULE_FIELDS}

# "<family>.<category>": one number per category, missing when unknown (docs/segments.md, "Category affinity").
FIELD_FAMILIES: Mapping[str, FieldKind] = types.MappingProxyType(
    {"category_spend": "number", "category_share": "number"}
)
CATEGORY_FIELDS = frozenset({"top_category"})  # string fields whose values are category names
_FAMILY_TEMPLATES = tuple(f"{family}.<category>" for family in FIELD_FAMILIES)


@dataclass(frozen=True)
class _CategoryGetter:
    """The getter of `category_spend.<category>` or `category_share.<category>`; equal for equal fields, so equal
    conditions compare equal."""

    family: str
    category: str

    def __call__(self, features: MemberFeatures) -> Decimal | None:
        if self.family == "category_spend":
            return features.categories.spend_in(self.category)
        return features.categories.share_of(self.category)


_AS_STORED = "category names are written as stored (case-folded, trimmed, single spaces)"


def _category_problem(name: str, where: str, spell: Callable[[str], str]) -> str | None:
    """Why `name` is not a category name as the store keeps it (loyalty.points.categories.category_name), or None.
    `where` names what takes the name; `spell` writes a name as the marketer would (in a field, or as a value)."""
    if len(name) > MAX_STRING_LENGTH:
        return f"a category name is at most {MAX_STRING_LENGTH} characters"
    stored = category_name(name)
    if stored is None:
        return f"{where} takes a category name, got {name!r}"
    if stored != name:
        return f"{_AS_STORED}: {spell(stored)}, not {spell(name)}"
    return None


# What a member declared (country, birthday, consents) and where they stand in the program today (tier, since when
# they are a member, the points they can spend): the rule fields that say nothing of how they behave. Every other
# field, and every category field, is read from what they bought or earned, and a rule that reads one is behavioural:
# it assigns no member without profiling consent (docs/segments.md, "Profiling consent"). A field added to
# MemberFeatures is behavioural unless it is named here.
DECLARED_FIELDS = frozenset(
    {"country", "age", "tier", "days_since_enrolled", "available_points"}
    | {name for name in RULE_FIELDS if name.startswith("consent.")}
)


def is_behavioural(field: str) -> bool:
    """True if a rule field (a documented field or a category field) is read from the member's behaviour."""
    return field not in DECLARED_FIELDS


def _kind(field: str) -> FieldKind:
    """The kind of a field already validated: a fixed field, or a member of a family."""
    kind = RULE_FIELDS.get(field)
    return kind if kind is not None else FIELD_FAMILIES[field.partition(".")[0]]


OPS = ("=", "!=", ">", ">=", "<", "<=", "in", "not_in", "between", "exists")
_NUMBER_ONLY = frozenset({">", ">=", "<", "<=", "between"})
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "in": lambda actual, operand: actual in operand,
    "not_in": lambda actual, operand: actual not in operand,
    "between": lambda actual, operand: operand[0] <= actual <= operand[1],
}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return Decimal(str(value)).is_finite() if isinstance(value, float | Decimal) else True


def _fits(kind: FieldKind, value: Any) -> bool:
    if kind == "number":
        return _is_number(value)
    if kind == "string":
        return isinstance(value, str) and len(value) <= MAX_STRING_LENGTH
    return isinstance(value, bool)


def _within_range(field: str, value: Any) -> None:
    values = value if isinstance(value, list | tuple) else [value]
    if any(_is_number(v) and abs(Decimal(str(v))) > MAX_NUMBER for v in values):
        raise ValueError(f"{field} takes numbers between -1e15 and 1e15")


def _json_number(value: int | float | Decimal) -> int | float:
    """Numbers are kept as JSON numbers (a Decimal read back from DynamoDB included), compared as Decimals."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _operand_of(value: Any) -> Any:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(str(value))


def _categories_as_stored(field: str, values: list[Any] | tuple[Any, ...]) -> None:
    for value in values:
        problem = _category_problem(value, field, repr)
        if problem is not None:
            raise ValueError(problem)


class Condition(BaseModel):
    """{"field": ..., "op": ..., "value": ...}: one comparison of a member field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str
    op: str
    value: Any = Field(default=None, validate_default=True)
    _get: Callable[[MemberFeatures], Any] = PrivateAttr()
    _operand: Any = PrivateAttr()

    @field_validator("field")
    @classmethod
    def _known_field(cls, name: str) -> str:
        if name in RULE_FIELDS:
            return name
        family, dot, category = name.partition(".")
        if dot and family in FIELD_FAMILIES:
            problem = _category_problem(category, f"{family}.<category>", lambda spelt: f"{family}.{spelt}")
            if problem is not None:
                raise ValueError(problem)
            return name
        if dot and (close := difflib.get_close_matches(family, FIELD_FAMILIES, n=1)):
            hint = f" (did you mean {close[0]}.{category}?)"
        else:
            close = difflib.get_close_matches(name, [*RULE_FIELDS, *_FAMILY_TEMPLATES], n=1)
            hint = f" (did you mean {close[0]}?)" if close else " (see the documented member fields)"
        raise ValueError(f"unknown field {name!r}{hint}")

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str, info: ValidationInfo) -> str:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; ops are {' '.join(OPS)}")
        field = info.data.get("field")
        if field is not None and op in _NUMBER_ONLY and _kind(field) != "number":
            raise ValueError(f"{op} does not apply to {field}, which takes {_TAKES[_kind(field)]}")
        return op

    @field_validator("value")
    @classmethod
    def _value_fits(cls, value: Any, info: ValidationInfo) -> Any:
        field, op = info.data.get("field"), info.data.get("op")
        if field is None or op is None:
            return value  # the field or op is already reported
        kind = _kind(field)
        if op == "exists":
            if value is None:
                return True
            if not isinstance(value, bool):
                raise ValueError("exists takes true or false (true when left out)")
            return value
        if kind == "number" and op != "exists":
            _within_range(field, value)
        if op == "between":
            if not (isinstance(value, list | tuple) and len(value) == 2 and all(map(_is_number, value))):
                raise ValueError(f"{field} between takes [low, high], two numbers")
            low, high = (_json_number(v) for v in value)
            if low > high:
                raise ValueError(f"{field} between takes [low, high] with low <= high, got [{low}, {high}]")
            return [low, high]
        if op in ("in", "not_in"):
            noun = {"number": "numbers", "string": "strings", "boolean": "true/false values"}[kind]
            if not isinstance(value, list | tuple) or not value or len(value) > MAX_LIST_VALUES:
                raise ValueError(f"{field} {op} takes a list of 1 to {MAX_LIST_VALUES} {noun}")
            if not all(_fits(kind, v) for v in value):
                raise ValueError(f"{field} {op} takes a list of {noun}")
            if field in CATEGORY_FIELDS:
                _categories_as_stored(field, value)
            return [_json_number(v) if kind == "number" else v for v in value]
        if not _fits(kind, value):
            raise ValueError(f"{field} takes {_TAKES[kind]}")
        if field in CATEGORY_FIELDS:
            _categories_as_stored(field, [value])
        return _json_number(value) if kind == "number" else value

    def model_post_init(self, context: Any, /) -> None:
        getter: Callable[[MemberFeatures], Any] | None = _GETTERS.get(self.field)  # shared: equal conditions are equal
        if getter is None:
            family, _, category = self.field.partition(".")
            getter = _CategoryGetter(family, category)
        self._get = getter
        if self.op in ("in", "not_in"):
            self._operand = frozenset(_operand_of(v) for v in self.value)
        elif self.op == "between":
            self._operand = tuple(_operand_of(v) for v in self.value)
        else:
            self._operand = _operand_of(self.value)

    def holds(self, features: MemberFeatures) -> bool:
        actual = self._get(features)
        if self.op == "exists":
            return (actual is not None) is self._operand
        if actual is None:
            return self.op == "!="
        return _COMPARE[self.op](actual, self._operand)


class AllOf(BaseModel):
    """{"all": [...]}: every rule holds (true when empty)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    rules: tuple[Rule, ...] = Field(alias="all")


class AnyOf(BaseModel):
    """{"any": [...]}: at least one rule holds (false when empty)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    rules: tuple[Rule, ...] = Field(alias="any")


class NotOf(BaseModel):
    """{"not": rule}: the rule does not hold."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    rule: Rule = Field(alias="not")


_TAGS: dict[type[BaseModel], str] = {AllOf: "{all}", AnyOf: "{any}", NotOf: "{not}", Condition: "{condition}"}
_SHAPE = 'a rule is {"all": [...]}, {"any": [...]}, {"not": {...}} or {"field": ..., "op": ..., "value": ...}'


def _rule_kind(data: Any) -> str | None:
    if isinstance(data, dict):
        if "field" in data or "op" in data:
            return "{condition}"
        for key in ("all", "any", "not"):
            if key in data:
                return f"{{{key}}}"
        return None
    return _TAGS.get(type(data))


Rule = Annotated[
    Annotated[AllOf, Tag("{all}")]
    | Annotated[AnyOf, Tag("{any}")]
    | Annotated[NotOf, Tag("{not}")]
    | Annotated[Condition, Tag("{condition}")],
    Discriminator(_rule_kind, custom_error_type="rule_shape", custom_error_message=_SHAPE),
]

for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()
_RULE: TypeAdapter[Rule] = TypeAdapter(Rule)
_TAG_NAMES = frozenset(_TAGS.values())


def evaluate(rule: Rule, features: MemberFeatures) -> bool:
    if isinstance(rule, Condition):
        return rule.holds(features)
    if isinstance(rule, AllOf):
        return all(evaluate(child, features) for child in rule.rules)
    if isinstance(rule, AnyOf):
        return any(evaluate(child, features) for child in rule.rules)
    return not evaluate(rule.rule, features)


def reads_behaviour(rule: Rule) -> bool:
    """True if any condition of the rule reads a behavioural field, wherever it sits (a `not` reads it too)."""
    if isinstance(rule, Condition):
        return is_behavioural(rule.field)
    if isinstance(rule, NotOf):
        return reads_behaviour(rule.rule)
    return any(reads_behaviour(child) for child in rule.rules)


def rule_document(rule: Rule) -> Any:
    """The rule as the JSON document it was written as."""
    return _RULE.dump_python(rule, mode="json", by_alias=True)


# ---- validation with JSON paths -------------------------------------------------------------------------------------


class RuleProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    reason: str


class InvalidRule(InvalidRequest):
    """A segment definition or rule that did not validate: every problem, each with its JSON path."""

    code = "invalid_segment"

    def __init__(self, problems: list[RuleProblem]):
        super().__init__("; ".join(f"{p.path}: {p.reason}" for p in problems), field=problems[0].path)
        self.problems = tuple(problems)

    def body(self) -> dict[str, Any]:
        errors = [{"field": p.path, "reason": p.reason} for p in self.problems]
        return {"code": self.code, "message": self.message, "errors": errors}


def _limit_problem(document: Any, root: str) -> RuleProblem | None:
    """Depth and size limits, checked on the raw JSON before any model is built (so a 10,000-deep document costs
    nothing). Shapes are left to the models."""
    stack: list[tuple[Any, str, int]] = [(document, root, 1)]
    conditions = nodes = 0
    while stack:
        node, path, depth = stack.pop()
        if not isinstance(node, dict):
            continue
        if depth > MAX_DEPTH:
            return RuleProblem(path=path, reason=f"rules nest at most {MAX_DEPTH} levels deep")
        nodes += 1
        if nodes > MAX_NODES:
            return RuleProblem(path=root, reason=f"a rule holds at most {MAX_NODES} groups and conditions")
        if "field" in node or "op" in node:
            conditions += 1
            if conditions > MAX_CONDITIONS:
                return RuleProblem(path=root, reason=f"a rule holds at most {MAX_CONDITIONS} conditions")
            continue
        for key in ("any", "all"):
            children = node.get(key)
            if isinstance(children, list):
                stack.extend(
                    (child, f"{path}.{key}[{i}]", depth + 1) for i, child in reversed(list(enumerate(children)))
                )
        if "not" in node:
            stack.append((node["not"], f"{path}.not", depth + 1))
    return None


def _path(location: tuple[int | str, ...], *, bare_rule: bool) -> str:
    """("{all}", "all", 2, "{condition}", "value") -> "rule.all[2].value": pydantic puts the chosen union tag at each
    rule position; drop it. `bare_rule`: the location starts at a rule (parse_rule), not at a SegmentDefinition."""
    path = "rule" if bare_rule else ""
    at_rule = bare_rule
    previous: int | str | None = None
    for part in location:
        if at_rule and part in _TAG_NAMES:
            at_rule = False
            continue
        if isinstance(part, int):
            path += f"[{part}]"
            at_rule = previous in ("all", "any")
        else:
            path = f"{path}.{part}" if path else part
            at_rule = part == "not" or (previous is None and not bare_rule and part == "rule")
        previous = part
    return path


def _reason(error: Mapping[str, Any]) -> str:
    kind, message = error["type"], str(error["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unexpected key"
    if kind in ("tuple_type", "list_type"):
        return "should be a list"
    return message


def _problems(error: ValidationError, *, bare_rule: bool) -> list[RuleProblem]:
    problems = []
    for item in error.errors():
        context = item.get("ctx") or {}
        if item["type"] == "rule_limit":
            problems.append(RuleProblem(path=context["path"], reason=context["reason"]))
        else:
            problems.append(RuleProblem(path=_path(tuple(item["loc"]), bare_rule=bare_rule), reason=_reason(item)))
    return problems


def parse_rule(document: Any) -> Rule:
    """A rule from its JSON document; InvalidRule names every problem by path (`rule.all[2].value: ...`)."""
    limit = _limit_problem(document, "rule")
    if limit is not None:
        raise InvalidRule([limit])
    try:
        rule: Rule = _RULE.validate_python(document)
    except ValidationError as error:
        raise InvalidRule(_problems(error, bare_rule=True)) from None
    return rule


class SegmentDefinition(BaseModel):
    """A marketer-defined segment: its rule and the version it was saved as. Member segment id: rule:<segment_id>."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    segment_id: Slug
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=1000)
    rule: Rule
    version: int = Field(default=1, ge=1)
    _behavioural: bool = PrivateAttr()

    @field_validator("rule", mode="before")
    @classmethod
    def _within_limits(cls, document: Any) -> Any:
        problem = _limit_problem(document, "rule")
        if problem is not None:
            raise PydanticCustomError(
                "rule_limit", "{path}: {reason}", {"path": problem.path, "reason": problem.reason}
            )
        return document

    @classmethod
    def parse(cls, document: Any) -> Self:
        """Like model_validate, but InvalidRule (a 422) with JSON paths: `rule.all[2].value: points_6m takes a number`."""
        try:
            return cls.model_validate(document)
        except ValidationError as error:
            raise InvalidRule(_problems(error, bare_rule=False)) from None

    def matches(self, features: MemberFeatures) -> bool:
        return evaluate(self.rule, features)

    @property
    def behavioural(self) -> bool:
        """The segment reads the member's behaviour (reads_behaviour): only members who consent to profiling are
        in it."""
        return self._behavioural

    def model_post_init(self, context: Any, /) -> None:
        self._behavioural = reads_behaviour(self.rule)

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
