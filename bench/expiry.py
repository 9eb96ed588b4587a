"""The daily points expiry at size, on DynamoDB Local (make bench; `python -m bench.expiry --members 50000`).

Seeds the members straight into a table made from template.yaml (BatchWriteItem: setup, not measured): a third
with a lot that ended yesterday (part of it spent), a third with a lot ending within the warning window, a third
with nothing due. Then runs the job's shares (loyalty.points.expiry) on threads, as its state machine's Map runs
them, and prints members per second and the DynamoDB calls per member read, per member expired and per member
announced, beside a bare Scan of the roster in the same run (the floor: the job cannot read members faster).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.refresh import batch_write, new_client, new_table
from devstack import dynamodb_local
from loyalty.adapters.dynamodb.points_store import ROSTER_INDEX, LoyaltyStore, member_key
from loyalty.adapters.dynamodb.table import to_item
from loyalty.core import ids
from loyalty.points.expiry import PointsExpiry
from loyalty.points.member_record import new_member_item
from loyalty.points.members import Consent, Member, Profile
from loyalty.points.program import ExpiryPolicy, ProgramConfig

DAY = date(2026, 12, 3)


class Counting:
    """The DynamoDB client, counting calls by operation (every thread's)."""

    def __init__(self, client: Any):
        self._client = client
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _items(members: int) -> list[dict[str, Any]]:
    yesterday, soon = (DAY - timedelta(days=1)).isoformat(), (DAY + timedelta(days=10)).isoformat()
    later = (DAY + timedelta(days=300)).isoformat()
    items = []
    for index in range(members):
        member = Member(
            member_id=ids.member_id(),
            external_id=f"bench-{index}",
            profile=Profile(),
            consent=Consent(),
            referral_code=ids.referral_code(),
            tier="Insider",
            enrolled_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
        values = new_member_item(member)
        kind = index % 3
        lots = {yesterday: 100, later: 50} if kind == 0 else {soon: 80, later: 20} if kind == 1 else {later: 60}
        consumed = 30 if kind == 0 else 0
        values.update(lots=lots, lots_consumed=consumed, available=sum(lots.values()) - consumed)
        values["lifetime_earned"] = sum(lots.values())
        values["redeemed"] = consumed
        items.append({**member_key(member.member_id), **to_item(values)})
    return items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--shares", type=int, default=8)
    args = parser.parse_args(argv)
    if not dynamodb_local.java_available():
        print("points expiry bench: skipped (DynamoDB Local needs java)")
        return
    with dynamodb_local.start() as server:
        client = new_client(server.endpoint)
        table = new_table(client)
        started = time.perf_counter()
        batch_write(client, table, _items(args.members), threads=8)
        print(f"seeded {args.members:,} members in {time.perf_counter() - started:.0f} s (setup, BatchWriteItem)")

        scan_started = time.perf_counter()
        scanned = 0
        for worker in range(args.shares):
            request: dict[str, Any] = {
                "TableName": table,
                "IndexName": ROSTER_INDEX,
                "Segment": worker,
                "TotalSegments": args.shares,
                "Limit": 200,
            }
            while True:
                page = client.scan(**request)
                scanned += len(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        scan_rate = scanned / (time.perf_counter() - scan_started)

        counting = Counting(new_client(server.endpoint))
        program = ProgramConfig(expiry=ExpiryPolicy(enabled=True, months=12, warn_days=30))
        clock = lambda: datetime(DAY.year, DAY.month, DAY.day, 1, tzinfo=UTC)  # noqa: E731
        job = PointsExpiry(LoyaltyStore(counting, table), lambda: program, shares=args.shares, clock=clock)
        shares = job.begin({"day": DAY.isoformat()})["shares"]

        def run(share: dict[str, Any]) -> dict[str, Any]:
            answer = job.expire(share, lambda: 900.0)
            while not answer["done"]:
                answer = job.expire(answer, lambda: 900.0)
            return answer

        started = time.perf_counter()
        with ThreadPoolExecutor(args.shares) as pool:
            done = list(pool.map(run, shares))
        seconds = time.perf_counter() - started
        read = sum(s["read"] for s in done)
        expired = sum(s["expired_members"] for s in done)
        warned = sum(1 for s in done for _ in range(s["warned"]))
        calls = counting.calls
        print(
            f"points expiry over {read:,} members ({args.shares} shares on threads, DynamoDB Local): {read / seconds:,.0f} members/s (a bare roster Scan: {scan_rate:,.0f}/s, "
            f"x{read / seconds / scan_rate:.2f}); {expired:,} members expired "
            f"({sum(s['expired_points'] for s in done):,} points), {warned:,} lots announced"
        )
        print(
            f"  DynamoDB calls: {dict(calls)}; Scan pages per member read {calls['Scan'] / max(read, 1):.4f}; "
            f"transactions per member expired or announced {calls['TransactWriteItems'] / max(expired + warned, 1):.2f}"
        )


if __name__ == "__main__":
    main()
