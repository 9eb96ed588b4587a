"""moto's transactions with devstack/moto_isolation.py's undo log: a failed TransactWriteItems leaves the table
exactly as it was (items, stream records, the table and its shard objects), a successful one writes every item, and
no transaction copies a table (the copy made each one's cost grow with the table and its stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.integration.conftest import REGION, create_loyalty_table, dynamodb_client


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


class Table:
    def __init__(self, client: Any, streams: Any):
        self.client = client
        self.streams = streams
        self.name = create_loyalty_table(client)
        self.stream_arn = client.describe_table(TableName=self.name)["Table"]["LatestStreamArn"]

    def put(self, pk: str, sk: str, **values: int) -> None:
        item = {**_key(pk, sk), **{name: {"N": str(value)} for name, value in values.items()}}
        self.client.put_item(TableName=self.name, Item=item)

    def items(self) -> list[dict[str, Any]]:
        return sorted(
            self.client.scan(TableName=self.name, ConsistentRead=True)["Items"],
            key=lambda i: (i["PK"]["S"], i["SK"]["S"]),
        )

    def iterator(self) -> str:
        shard = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]
        return str(
            self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        )

    def records(self, iterator: str) -> tuple[list[tuple[str, Any]], str]:
        """(event name, keys) of the records after the iterator, and the next iterator."""
        page = self.streams.get_records(ShardIterator=iterator)
        found = [(r["eventName"], r["dynamodb"]["Keys"]) for r in page["Records"]]
        return found, page["NextShardIterator"]


@pytest.fixture
def table() -> Iterator[Table]:
    with mock_aws():
        yield Table(dynamodb_client(), boto3.client("dynamodbstreams", region_name=REGION))


def _moto_table(name: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables[name]


def test_a_failed_transaction_leaves_items_stream_and_table_as_they_were(table: Table) -> None:
    # Given two items, their stream records read, and the table and shard objects moto holds
    table.put("MEMBER#a", "MEMBER", available=10)
    table.put("MEMBER#b", "MEMBER", available=5)
    _, iterator = table.records(table.iterator())
    before, moto_table = table.items(), _moto_table(table.name)
    shard = moto_table.stream_shard
    # When a transaction writes a new item, updates one, deletes another, then fails a condition
    with pytest.raises(ClientError) as failed:
        table.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table.name, "Item": {**_key("MEMBER#a", "LEDGER#1"), "points": {"N": "3"}}}},
                {
                    "Update": {
                        "TableName": table.name,
                        "Key": _key("MEMBER#a", "MEMBER"),
                        "UpdateExpression": "ADD available :p",
                        "ExpressionAttributeValues": {":p": {"N": "3"}},
                    }
                },
                {"Delete": {"TableName": table.name, "Key": _key("MEMBER#b", "MEMBER")}},
                {"Put": {"TableName": table.name, "Item": _key("MEMBER#c", "MEMBER")}},
                {
                    "ConditionCheck": {
                        "TableName": table.name,
                        "Key": _key("MEMBER#d", "MEMBER"),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            ]
        )
    assert failed.value.response["Error"]["Code"] == "TransactionCanceledException"
    # Then every item is as it was, no hash key it created is left behind, and no stream record was added
    assert table.items() == before
    assert _moto_table(table.name) is moto_table and moto_table.stream_shard is shard
    assert not any(str(hash_key.value) == "MEMBER#c" for hash_key in moto_table.items)
    assert table.records(iterator)[0] == []
    # And a later write reaches a reader of the stream through the iterator it already held
    table.put("MEMBER#b", "MEMBER", available=6)
    assert table.records(iterator)[0] == [("MODIFY", _key("MEMBER#b", "MEMBER"))]


def test_a_transaction_naming_one_item_twice_writes_nothing(table: Table) -> None:
    table.put("MEMBER#a", "MEMBER", available=10)
    before = table.items()
    with pytest.raises(ClientError):
        table.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table.name, "Item": {**_key("MEMBER#a", "MEMBER"), "available": {"N": "1"}}}},
                {"Delete": {"TableName": table.name, "Key": _key("MEMBER#a", "MEMBER")}},
            ]
        )
    assert table.items() == before


def test_a_successful_transaction_writes_every_item_and_copies_no_table(
    table: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models.table import Table as MotoTable

    def refuse(self: Any, memo: Any) -> Any:
        raise AssertionError("a transaction copied a table")

    monkeypatch.setattr(MotoTable, "__deepcopy__", refuse, raising=False)
    table.put("MEMBER#a", "MEMBER", available=10)
    iterator = table.iterator()
    outcomes = []
    for condition in ("available >= :n", "available > :big"):  # one that commits, one that fails
        try:
            table.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": table.name,
                            "Key": _key("MEMBER#a", "MEMBER"),
                            "UpdateExpression": "ADD available :minus",
                            "ConditionExpression": condition,
                            "ExpressionAttributeValues": {":minus": {"N": "-4"}, ":n": {"N": "4"}, ":big": {"N": "99"}},
                        }
                    },
                    {"Put": {"TableName": table.name, "Item": _key("MEMBER#a", f"LEDGER#{condition}")}},
                ]
            )
            outcomes.append("committed")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes == ["committed", "TransactionCanceledException"]
    items = {item["SK"]["S"]: item for item in table.items()}
    assert items["MEMBER"]["available"] == {"N": "6"}
    assert set(items) == {"MEMBER", "LEDGER#available >= :n"}
    assert [name for name, _ in table.records(iterator)[0]] == ["INSERT", "MODIFY", "INSERT"]
