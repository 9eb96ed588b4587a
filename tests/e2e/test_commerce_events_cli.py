"""`python -m devstack.commerce` against the running local stack: commerce events through the bus, as on AWS.

The command posts with PutEvents on the stack's moto endpoint (found at /_local/status); the stack's rule delivers
to OrderEventsFunction; the command then shows the PointsEarned / PointsReversed the events caused.
"""

from __future__ import annotations

import io
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack import commerce
from devstack.pollers import RulePoller
from devstack.stack import LocalStack
from tests.e2e.conftest import ROOT, Api

WAIT = "30"  # the command's bound on waiting for the effect; generous for a busy machine


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = commerce.main(list(argv), out=out)
    return code, out.getvalue()


def delivered(stack: LocalStack) -> int:
    """Commerce events the stack's rule has handed to OrderEventsFunction so far."""
    return sum(p.delivered for p in stack.pollers if isinstance(p, RulePoller) and p.function == "OrderEventsFunction")


def wait_until_delivered(stack: LocalStack, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while delivered(stack) < count:
        assert time.monotonic() < deadline, f"{delivered(stack)} of {count} commerce events delivered in {timeout} s"
        time.sleep(0.1)


def test_placed_then_refunded_moves_the_balance_and_shows_the_domain_events(stack: LocalStack, api: Api) -> None:
    # Given a member the commerce system knows by their external id
    customer = f"cust-{uuid.uuid4().hex[:10]}"
    member_id = api.call("POST", "/v1/members", json={"external_id": customer}).json()["member_id"]
    order = f"web-{uuid.uuid4().hex[:10]}"

    # When the shop places an order through the bus
    code, out = run(
        "placed",
        "--api",
        stack.api_url,
        "--customer",
        customer,
        "--order",
        order,
        "--amount",
        "120.50",
        "--currency",
        "USD",
        "--wait",
        WAIT,
    )

    # Then the command printed the event id, then the PointsEarned it caused; the balance holds the points
    assert code == 0, out
    assert f"OrderPlaced order {order} -> bus {stack.resource_name('LoyaltyBus')}: event id " in out
    earned = stack.events("PointsEarned", member_id=member_id, order_id=order)
    assert len(earned) == 1 and earned[0]["detail"]["points"] == 120
    assert f"PointsEarned  {json.dumps(earned[0]['detail'])}" in out
    assert api.member(member_id)["balance"]["available"] == 120

    # When part of it is refunded
    code, out = run(
        "refunded", "--api", stack.api_url, "--order", order, "--refund", "rf-1", "--amount", "20.50", "--wait", WAIT
    )

    # Then that share of the points is reversed, and the command showed the PointsReversed
    assert code == 0, out
    assert f"OrderRefunded order {order} refund rf-1 -> bus" in out
    reversed_ = stack.events("PointsReversed", member_id=member_id, order_id=order, refund_id="rf-1")
    assert len(reversed_) == 1 and reversed_[0]["detail"]["points"] == -20
    assert "PointsReversed  " in out
    assert api.member(member_id)["balance"]["available"] == 100


def test_the_same_refund_sent_twice_reverses_once(stack: LocalStack, api: Api, tmp_path: Path) -> None:
    customer = f"cust-{uuid.uuid4().hex[:10]}"
    member_id = api.call("POST", "/v1/members", json={"external_id": customer}).json()["member_id"]
    order = f"web-{uuid.uuid4().hex[:10]}"
    code, out = run(
        "placed", "--api", stack.api_url, "--customer", customer, "--order", order, "--amount", "100",
        "--currency", "USD", "--wait", WAIT,
    )  # fmt: skip
    assert code == 0, out
    start = delivered(stack)

    # When two events carry the same refund (two PutEvents entries, two EventBridge event ids, one refund_id)
    refund = {"order_id": order, "refund_id": "rf-dup", "amount": 30}
    twice = tmp_path / "refund-twice.json"
    twice.write_text(json.dumps([refund, refund]))
    code, out = run("send", str(twice), "--api", stack.api_url, "--wait", WAIT)

    # Then it is reversed once: one PointsReversed, the second event said to be the same refund
    assert code == 0, out
    ids = [line.rsplit(" ", 1)[-1] for line in out.splitlines() if " event id " in line]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert f"OrderRefunded order {order} refund rf-dup: the same as above, applied once" in out

    # And a third time, later, from the command line: seen before, changes nothing
    code, out = run(
        "refunded", "--api", stack.api_url, "--order", order, "--refund", "rf-dup", "--amount", "30", "--wait", WAIT
    )
    assert code == 0, out
    assert "(seen before: applied once, this one changed nothing)" in out
    wait_until_delivered(stack, start + 3)
    stack.wait_for_events("PointsReversed", member_id=member_id, refund_id="rf-dup", timeout=30)
    time.sleep(0.5)  # a second reversal, were there one, would be published by now (the first one was)
    assert len(stack.events("PointsReversed", member_id=member_id, order_id=order)) == 1
    assert api.member(member_id)["balance"]["available"] == 70
    assert [e["kind"] for e in api.ledger(member_id)] == ["reversal", "earn"]


def test_every_order_events_sample_goes_through_the_stack(stack: LocalStack, api: Api, tmp_path: Path) -> None:
    """events/order_events_*.json, sent as they are written (this run's member and order ids put in)."""
    samples = sorted((ROOT / "events").glob("order_events_*.json"))
    placed = [p for p in samples if json.loads(p.read_text())["detail-type"] == "OrderPlaced"]
    refunds = [p for p in samples if json.loads(p.read_text())["detail-type"] == "OrderRefunded"]
    assert any("customer_id" in json.loads(p.read_text())["detail"] for p in placed)
    assert any("member_id" in json.loads(p.read_text())["detail"] for p in placed)
    assert refunds and all(json.loads(p.read_text())["detail"].get("refund_id") for p in refunds)

    customer = f"cust-{uuid.uuid4().hex[:10]}"
    member_id = api.call("POST", "/v1/members", json={"external_id": customer}).json()["member_id"]
    orders: dict[str, str] = {}  # the sample's order id -> this run's

    def this_run(sample: Path) -> Path:
        event: dict[str, Any] = json.loads(sample.read_text())
        detail = event["detail"]
        detail["order_id"] = orders.setdefault(detail["order_id"], f"{detail['order_id']}-{uuid.uuid4().hex[:8]}")
        if "customer_id" in detail:
            detail["customer_id"] = customer
        if "member_id" in detail:
            detail["member_id"] = member_id
        path = tmp_path / sample.name
        path.write_text(json.dumps(event))
        return path

    for sample in placed + refunds:
        code, out = run("send", str(this_run(sample)), "--api", stack.api_url, "--wait", WAIT)
        assert code == 0, f"{sample.name}: {out}"
        assert ("PointsReversed" if sample in refunds else "PointsEarned") in out, f"{sample.name}: {out}"
    assert len(stack.events("PointsEarned", member_id=member_id)) == len(placed)
    assert len(stack.events("PointsReversed", member_id=member_id)) == len(refunds)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_stack_running_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    api = f"http://127.0.0.1:{_closed_port()}"
    code, out = run("placed", "--api", api, "--customer", "c-1", "--order", "o-1", "--amount", "5", "--currency", "USD")
    assert code == 2 and out == ""
    assert f"no local stack at {api}" in capsys.readouterr().err


def test_a_refund_without_refund_id_is_refused_before_it_leaves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(SystemExit) as exit_:
        run("refunded", "--api", api, "--order", "o-1", "--amount", "5")
    assert exit_.value.code == 2
    assert "--refund" in capsys.readouterr().err

    bare = tmp_path / "refund.json"
    bare.write_text(
        json.dumps({"detail-type": "OrderRefunded", "source": "commerce", "detail": {"order_id": "o-1", "amount": 5}})
    )
    assert run("send", str(bare), "--api", api) == (2, "")
    assert "refund_id is required" in capsys.readouterr().err
