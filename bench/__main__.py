"""`make bench`: DynamoDB round trips per operation, handler throughput beside a bare put_item loop, cold imports,
the segment scoring core (bench/segments.py), pricing with promotions beside purchase_points (bench/pricing.py) and
the segment refresh end to end (bench/refresh.py).

Absolute times on a laptop are noise; the figures that matter are counts (round trips per operation) and ratios
against a baseline measured in the same run on the same emulator.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("members_api", "order_events", "event_publisher", "token_claims")


def proxy_event(
    method: str,
    path: str,
    resource: str,
    path_parameters: dict[str, str],
    body: Any,
    claims: dict[str, str],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "prod",
            "resourcePath": resource,
            "httpMethod": method,
            "authorizer": {"claims": claims},
        },
    }


def _rate(count: int, action: Callable[[int], Any], threads: int = 1) -> float:
    start = time.perf_counter()
    if threads == 1:
        for i in range(count):
            action(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(action, range(count)))
    return count / (time.perf_counter() - start)


def import_times(repeats: int) -> dict[str, float]:
    """Median seconds to import each handler module in a fresh interpreter (what a cold start pays)."""
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); t = time.perf_counter(); import app; "
        "print(time.perf_counter() - t)"
    )
    env = {**os.environ, "TABLE_NAME": "bench-table", "EVENT_BUS_NAME": "bench-bus"}
    result = {}
    for name in FUNCTIONS:
        samples = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code, str(ROOT / "functions" / name)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout
            )
            for _ in range(repeats)
        ]
        result[name] = statistics.median(samples)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=300, help="operations per throughput figure")
    parser.add_argument("--dynamodb", choices=["auto", "local", "moto"], default="auto")
    parser.add_argument(
        "--refresh-members",
        type=int,
        default=50_000,
        help="members of the end-to-end refresh (about 35 minutes at 50,000 on 2 CPUs, 2 at 2,000; figures in "
        "docs/refresh-estimate.md, 'Measured')",
    )
    args = parser.parse_args()

    from devstack.stack import LocalStack

    with LocalStack(root=ROOT, dynamodb=args.dynamodb, port=0) as stack:
        from loyalty.points.members import Enrollment
        from loyalty.points.rewards import Reward, RewardKind
        from loyalty.runtime import client, loyalty_service

        dynamodb = client("dynamodb")
        table = os.environ["TABLE_NAME"]
        service = loyalty_service()
        service.store.put_reward(
            Reward(
                reward_id="bench-reward",
                name="Bench",
                kind=RewardKind.DISCOUNT_FIXED,
                cost_points=1,
                value=Decimal(1),
                currency="USD",
            )
        )
        # The calls the request itself makes: those of this thread (the stack runs an invoked handler in the caller's
        # thread). The stream's consumers (segment re-evaluation) share the client from their own threads, and their
        # reads and writes belong to them, not to the earn or the redemption.
        calls: list[str] = []
        bench_thread = threading.get_ident()
        dynamodb.meta.events.register(
            "before-call.dynamodb.*",
            lambda model, **_: calls.append(model.name) if threading.get_ident() == bench_thread else None,
        )
        admin = {"sub": "bench", "cognito:groups": "loyalty-admins"}

        member_id = service.enroll(Enrollment(external_id=f"bench-{uuid.uuid4().hex}")).body["member_id"]
        route = f"/v1/members/{member_id}"

        def earn(i: int) -> None:
            body = {
                "type": "purchase",
                "order_id": f"bench-{uuid.uuid4().hex}",
                "amount": "10.00",
                "currency": "USD",
            }
            event = proxy_event(
                "POST",
                f"{route}/activities",
                "/v1/members/{member_id}/activities",
                {"member_id": member_id},
                body,
                admin,
            )
            response = stack.invoke("MembersApiFunction", event)
            assert response["statusCode"] == 201, response

        def redeem(i: int) -> None:
            event = proxy_event(
                "POST",
                f"{route}/redemptions",
                "/v1/members/{member_id}/redemptions",
                {"member_id": member_id},
                {"reward_id": "bench-reward"},
                admin,
                {"Idempotency-Key": uuid.uuid4().hex},
            )
            response = stack.invoke("MembersApiFunction", event)
            assert response["statusCode"] == 201, response

        def bare_put(i: int) -> None:
            dynamodb.put_item(
                TableName=table,
                Item={"PK": {"S": f"BENCH#{uuid.uuid4().hex}"}, "SK": {"S": "X"}, "n": {"N": str(i)}},
            )

        def bare_transaction(i: int) -> None:
            """What one earn writes, without the handler: three conditional puts in one transaction."""
            key = uuid.uuid4().hex
            dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": table,
                            "Item": {"PK": {"S": f"BENCH#{key}"}, "SK": {"S": part}, "n": {"N": str(i)}},
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    }
                    for part in ("A", "B", "C")
                ]
            )

        def per_call(operation: Callable[[int], None], count: int) -> Counter[int]:
            """How many round trips each of `count` calls took: {round trips: calls}."""
            taken: Counter[int] = Counter()
            for i in range(count):
                calls.clear()
                operation(i)
                taken[len(calls)] += 1
            return taken

        def shown(taken: Counter[int]) -> str:
            return ", ".join(f"{calls} x {trips}" for trips, calls in sorted(taken.items()))

        earn(0)
        redeem(0)  # warm: program and catalog caches filled, connections open
        # 50 earns of 10 points from 20: the member reaches VIB (350) on the 33rd, whose guard fails: written again.
        earns = per_call(earn, 50)
        redeems = per_call(redeem, 50)
        earn_calls = sum(t * n for t, n in earns.items()) / 50
        redeem_calls = sum(t * n for t, n in redeems.items()) / 50
        print(f"backend: DynamoDB {stack.dynamodb_backend}  ({args.ops} operations per figure)")
        print(
            f"DynamoDB round trips per earn:       {earn_calls:.2f}  (target 1; calls x round trips: {shown(earns)}, "
            "the 2 is the earn that crossed the VIB threshold)"
        )
        print(f"DynamoDB round trips per redemption: {redeem_calls:.2f}  (target 1; {shown(redeems)})")
        # A program that prices by the member: a tier multiplier, so every earn reads the member first.
        current = service.program.get()
        document = current.model_dump(mode="json")
        ladder = [{"name": "Insider", "threshold": 0}, {"name": "VIB", "threshold": 350, "earn_multiplier": "1.5"}]
        assert service.replace_program({**document, "tiers": ladder}, current.version, "bench").status == 200
        service.program.clear()
        earn(0)  # warm: the new program document read into the cache
        priced = per_call(earn, 20)
        print(
            f"DynamoDB round trips per earn with a tier multiplier: "
            f"{sum(t * n for t, n in priced.items()) / 20:.2f}  (the member read, then the write: {shown(priced)})"
        )
        assert service.replace_program(document, current.version + 1, "bench").status == 200
        service.program.clear()

        for threads in (1, 4):
            put_rate = _rate(args.ops, bare_put, threads)
            transaction_rate = _rate(args.ops, bare_transaction, threads)
            earn_rate = _rate(args.ops, earn, threads)
            redeem_rate = _rate(args.ops, redeem, threads)
            print(
                f"{threads} thread(s): bare put_item {put_rate:7.1f}/s | bare 3-item transaction "
                f"{transaction_rate:7.1f}/s | earn via handler {earn_rate:7.1f}/s "
                f"(x{earn_rate / put_rate:.2f} of put_item, x{earn_rate / transaction_rate:.2f} of the transaction) | "
                f"redeem via handler {redeem_rate:7.1f}/s (x{redeem_rate / put_rate:.2f}, "
                f"x{redeem_rate / transaction_rate:.2f})"
            )
        balance = service.member(member_id).balance
        print(
            f"member after the run: available={balance.available} lifetime_earned={balance.lifetime_earned} "
            f"redeemed={balance.redeemed}"
        )

    print("cold import of each handler (median of 5 fresh interpreters):")
    for name, seconds in import_times(5).items():
        print(f"  {name:<16} {seconds * 1000:7.1f} ms")

    print("\nsegment scoring core (bench/segments.py):", flush=True)
    from bench import segments

    segments.main([])

    print("\npricing with promotions (bench/pricing.py):", flush=True)
    from bench import pricing

    pricing.main([])

    print("\nthe daily points expiry at size (bench/expiry.py):", flush=True)
    from bench import expiry

    expiry.main([])

    print("\nsegment refresh end to end on DynamoDB Local (bench/refresh.py):", flush=True)
    from bench import refresh

    refresh.main(["--members", str(args.refresh_members)])


if __name__ == "__main__":
    main()
