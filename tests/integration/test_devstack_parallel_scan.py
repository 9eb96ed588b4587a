"""The segment refresh reads members with a parallel Scan of the sparse MemberRoster index. Each emulator the local
stack and the tests use (moto in-process, moto in server mode, DynamoDB Local) must give every member item exactly
once across the segments, with pagination, and no item the index does not hold.

Its own module, away from the SQS tests: those keep a LocalStack up for the module, and a `mock_aws` test must not
run while a stack is up (moto's state is one per process).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from tests.conftest import MotoServer
from tests.integration.conftest import create_loyalty_table, dynamodb_client

MEMBERS = 300
SEGMENTS = 4
PAGE = 50


@pytest.fixture(params=["moto", "moto-server", pytest.param("dynamodb-local", marks=pytest.mark.dynamodb_local)])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "moto":
        with mock_aws():
            yield dynamodb_client()
    elif request.param == "moto-server":
        server: MotoServer = request.getfixturevalue("moto_server")
        yield dynamodb_client(server.endpoint)
    else:
        yield dynamodb_client(request.getfixturevalue("dynamodb_local").endpoint)


def write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        while requests:
            unprocessed = client.batch_write_item(RequestItems={table: requests}).get("UnprocessedItems", {})
            requests = unprocessed.get(table, [])


def scan_segment(client: Any, table: str, segment: int) -> tuple[list[dict[str, Any]], int]:
    """Every item of one segment of MemberRoster, page by page; and how many pages that took."""
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": "MemberRoster",
        "Segment": segment,
        "TotalSegments": SEGMENTS,
        "Limit": PAGE,
    }
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = client.scan(**request)
        pages += 1
        assert len(page["Items"]) <= PAGE
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items, pages
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_parallel_scan_of_the_member_roster_gives_each_member_item_once(client: Any) -> None:
    # Given the template's table with 300 member items (with roster_id) and 300 other items (without)
    table = create_loyalty_table(client)
    items = []
    for n in range(MEMBERS):
        pk = {"S": f"MEMBER#m{n:04d}"}
        items.append({"PK": pk, "SK": {"S": "MEMBER"}, "roster_id": pk, "n": {"N": str(n)}})
        items.append({"PK": pk, "SK": {"S": f"LEDGER#{n:04d}"}, "n": {"N": str(n)}})
    write(client, table, items)

    # When four workers scan one segment each, 50 items a page
    results = [scan_segment(client, table, segment) for segment in range(SEGMENTS)]

    # Then together they read each member item exactly once, with all its attributes (ALL projection), and nothing else
    seen = Counter((item["PK"]["S"], item["SK"]["S"]) for items, _ in results for item in items)
    assert seen == Counter({(f"MEMBER#m{n:04d}", "MEMBER"): 1 for n in range(MEMBERS)})
    assert all("n" in item and "roster_id" in item for items, _ in results for item in items)
    # And the work was shared out and paginated: no segment got everything, and some took more than one page
    assert all(len(items) < MEMBERS for items, _ in results)
    assert sum(pages for _, pages in results) > SEGMENTS
