"""`python -m bench.streams`: how DynamoDB Local's writes depend on the stream records its other tables hold.

Each case starts a DynamoDB Local of its own, fills a first table with --items synthetic member items
(BatchWriteItem, 8 threads), then fills a second table with the same items, and prints both write rates. The tables
have only a key schema (no index), so the cases differ in one thing: streams on both tables, streams off, or streams
on and the first table deleted before the second is filled. bench/refresh.py gives each of its tables an emulator of
its own because of what this prints (docs/local-stack.md, "What the emulators get wrong").
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime
from typing import Any

from bench.refresh import batch_write, new_client, synthetic_member
from devstack import dynamodb_local

CASES = (
    ("streams on both tables", True, False),
    ("no streams", False, False),
    ("streams on, the first table deleted before the second is filled", True, True),
)


def fill(client: Any, name: str, stream: bool, items: list[dict[str, Any]]) -> float:
    request: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"} for key in ("PK", "SK")],
        "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
    }
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    client.create_table(**request)
    half = len(items) // 2
    batch_write(client, name, items[:half], 8)  # the JVM warms up on the first half
    started = time.perf_counter()
    batch_write(client, name, items[half:], 8)
    return (len(items) - half) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=6_000)
    args = parser.parse_args(argv)
    if not dynamodb_local.java_available():
        print("DynamoDB Local streams bench skipped: no java")
        return
    as_of = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(2026)
    items = [synthetic_member(rng, index, as_of) for index in range(args.items)]
    print(
        f"DynamoDB Local: {args.items:,} member items into a first table, then the same into a second; items/s over "
        "the second half of each fill"
    )
    for label, stream, delete_first in CASES:
        with dynamodb_local.start() as server:
            client = new_client(server.endpoint)
            first = fill(client, "first", stream, items)
            if delete_first:
                client.delete_table(TableName="first")
            second = fill(client, "second", stream, items)
        print(f"  {label}: first {first:,.0f}, second {second:,.0f} (x{second / first:.2f})", flush=True)


if __name__ == "__main__":
    main()
