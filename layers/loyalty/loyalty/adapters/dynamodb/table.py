"""The DynamoDB toolkit every store is built on: the item codec, keys, the update-expression builder, cursors, and
one Table (a client and a table name) with the all-or-nothing transaction and its cancellation reasons.

Stores hold what their items mean; this module holds how any item is written and read.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from loyalty.core import correlation
from loyalty.core.errors import InvalidRequest, StoreContention
from loyalty.core.instants import timestamp

KEY_ATTRIBUTES = ("PK", "SK")  # the table's hash and range keys, as template.yaml declares them
TTL_ATTRIBUTE = "expires_at"  # the table's TimeToLiveSpecification attribute

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def encode(value: Any) -> Any:
    """A plain value as boto3's serializer takes it: datetimes as timestamps, dates ISO, floats as Decimal, enums
    as their values, None left out of maps."""
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):  # StrEnum
        return value.value
    return value


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(encode(v)) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def attribute_value(value: Any) -> Any:
    return _serializer.serialize(encode(value))


@dataclass
class Cancelled(Exception):
    """A transaction refused on a condition: which of its items failed, and the old item where asked for."""

    reasons: list[dict[str, Any]] = field(default_factory=list)

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index].get("Code") == "ConditionalCheckFailed"

    def old_item(self, index: int) -> dict[str, Any] | None:
        item = self.reasons[index].get("Item") if index < len(self.reasons) else None
        return from_item(item) if item else None


class Update:
    """Builds one UpdateExpression from SET / ADD / REMOVE clauses with generated placeholders."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.adds: list[str] = []
        self.removes: list[str] = []
        self.conditions: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = attribute_value(value)
        return placeholder

    def expression(self) -> str:
        clauses = []
        if self.sets:
            clauses.append("SET " + ", ".join(self.sets))
        if self.adds:
            clauses.append("ADD " + ", ".join(self.adds))
        if self.removes:
            clauses.append("REMOVE " + ", ".join(self.removes))
        return " ".join(clauses)

    def request(self, table: str, key: dict[str, Any], *, return_old: bool = True) -> dict[str, Any]:
        expression = self.expression()
        request: dict[str, Any] = {"TableName": table, "Key": key}
        if self.names:
            request["ExpressionAttributeNames"] = self.names
        if expression:
            request["UpdateExpression"] = expression
        if self.values:
            request["ExpressionAttributeValues"] = self.values
        if self.conditions:
            request["ConditionExpression"] = " AND ".join(f"({c})" for c in self.conditions)
            if return_old:
                request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if not expression:  # nothing to change: keep the item's conditions in the transaction
            return {"ConditionCheck": request}
        return {"Update": request}


def _listen_to_nothing() -> None:
    pass


_conflict_retried: Callable[[], None] = _listen_to_nothing


def on_conflict_retried(listener: Callable[[], None] | None) -> None:
    """Call `listener` each time a transaction is retried after a TransactionConflict (None: nobody). The
    composition root connects the conflict metric here, so the toolkit counts without knowing how it is reported."""
    global _conflict_retried
    _conflict_retried = listener or _listen_to_nothing


def correlated_items(items: list[dict[str, Any]], correlation_id: str | None) -> list[dict[str, Any]]:
    """The transaction's items with the correlation id on every item it writes: a Put carries it as an attribute,
    an Update sets it (docs/observability.md). Deletes and condition checks write nothing and stay as they are; so
    does an Update whose expression already sets the attribute, or has a SET clause elsewhere than first."""
    if correlation_id is None:
        return items
    value = {"S": correlation_id}
    stamped: list[dict[str, Any]] = []
    for item in items:
        if "Put" in item and correlation.ATTRIBUTE not in item["Put"]["Item"]:
            put = item["Put"]
            item = {**item, "Put": {**put, "Item": {**put["Item"], correlation.ATTRIBUTE: value}}}
        elif "Update" in item:
            item = {**item, "Update": _set_correlation(item["Update"], value)}
        stamped.append(item)
    return stamped


def _set_correlation(update: dict[str, Any], value: dict[str, str]) -> dict[str, Any]:
    expression = str(update.get("UpdateExpression", ""))
    clause = "#correlation_id = :correlation_id"
    names = update.get("ExpressionAttributeNames") or {}
    if "#correlation_id" in names or ":correlation_id" in (update.get("ExpressionAttributeValues") or {}):
        return update
    if expression.startswith("SET "):
        expression = f"SET {clause}, {expression[4:]}"
    elif " SET " in f" {expression} ".upper():
        return update
    else:
        expression = f"SET {clause} {expression}".strip()
    return {
        **update,
        "UpdateExpression": expression,
        "ExpressionAttributeNames": {**names, "#correlation_id": correlation.ATTRIBUTE},
        "ExpressionAttributeValues": {**(update.get("ExpressionAttributeValues") or {}), ":correlation_id": value},
    }


def encode_cursor(position: dict[str, Any]) -> str:
    """A page's position as an opaque, URL-safe token."""
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The position a cursor of encode_cursor holds; anything else is the caller's error, named `cursor`."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as error:
        raise InvalidRequest("cursor is not one this API returned", field="cursor") from error
    if not isinstance(value, dict):
        raise InvalidRequest("cursor is not one this API returned", field="cursor")
    return value


@dataclass
class Table:
    """One DynamoDB table through a boto3 client (moto, DynamoDB Local or AWS): point reads and transactions."""

    client: Any
    name: str
    max_attempts: int = 12
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def get(self, item_key: dict[str, Any]) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.name, Key=item_key, ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def transact(self, items: list[dict[str, Any]]) -> None:
        """Write all or nothing. TransactionConflict (another transaction on the same item) is retried with
        jittered backoff; a failed condition is raised as Cancelled for the caller to interpret, never retried.
        The items carry the correlation id of the change being made, if any (correlated_items)."""
        items = correlated_items(items, correlation.current())
        for attempt in range(self.max_attempts):
            try:
                self.client.transact_write_items(TransactItems=items)
                return
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons: list[dict[str, Any]] = list(error.response.get("CancellationReasons") or [])  # type: ignore[arg-type]
                codes = {r.get("Code") for r in reasons}
                if "TransactionConflict" in codes or not reasons:
                    if attempt + 1 < self.max_attempts:  # the last conflict is not retried: StoreContention
                        _conflict_retried()
                    self.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
                    continue
                raise Cancelled(reasons) from error
        raise StoreContention("too many concurrent changes to this member; retry the request")
