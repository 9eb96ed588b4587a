"""`python -m devstack.commerce`: the commerce system's order events, posted to the running local stack's bus.

    python -m devstack.commerce placed --customer cust-1001 --order web-5532 --amount 80 --currency USD \\
        [--line SKU-SERUM:skincare:40 ...] [--occurred-at 2026-11-20T14:03:09Z]
    python -m devstack.commerce placed --member m_01... --order web-5533 --amount 15 --currency EUR
    python -m devstack.commerce refunded --order web-5532 --refund rf-2 --amount 20
    python -m devstack.commerce send events/order_events_order_placed.json     (or - for stdin)

`send` takes a sample event (events/order_events_*.json: a full EventBridge event), a PutEvents entry, or a bare
detail (its type from --detail-type, or guessed: refund_id makes it OrderRefunded), or a JSON array of these.
A refund always carries refund_id: it is the refund's identity, so the same refund sent twice reverses once.

The events go to the bus with PutEvents, on the moto endpoint the stack publishes at GET <api>/_local/status, with
source `commerce`: the stack's rule delivers them to OrderEventsFunction as EventBridge does on AWS. The command
prints each event id, then waits (--wait, 10 s at most by default) for the domain events they cause (PointsEarned for an
order, PointsReversed for a refund) to show at GET <api>/_local/events, and prints them.

Exit status: 0 posted and every effect seen (or seen before: the same order or refund again changes nothing);
1 posted but an effect did not show within the wait; 2 bad input, or no local stack at --api.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from devstack.template import REGION
from loyalty.points.activities import Purchase, Refund

SOURCE = "commerce"
ORDER_PLACED, ORDER_REFUNDED = "OrderPlaced", "OrderRefunded"
DETAIL_TYPES = (ORDER_PLACED, ORDER_REFUNDED)
PUT_EVENTS_BATCH = 10  # EventBridge's limit per PutEvents call


class CommerceError(Exception):
    """Bad input or no stack: the message is for the user; exit status 2."""


# --- the events -----------------------------------------------------------------------------------------------------


@dataclass
class OrderEvent:
    detail_type: str
    detail: dict[str, Any]
    source: str = SOURCE
    time: str | None = None
    resources: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        order = self.detail.get("order_id")
        if self.detail_type == ORDER_REFUNDED:
            return f"{self.detail_type} order {order} refund {self.detail.get('refund_id')}"
        return f"{self.detail_type} order {order}"

    def effect(self) -> tuple[str, dict[str, Any]]:
        """The domain event this one causes, and the detail values that identify it."""
        if self.detail_type == ORDER_PLACED:
            return "PointsEarned", {"order_id": self.detail.get("order_id")}
        return "PointsReversed", {"order_id": self.detail.get("order_id"), "refund_id": self.detail.get("refund_id")}

    def entry(self, bus: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, default=str),
            "EventBusName": bus,
        }
        if self.resources:
            entry["Resources"] = self.resources
        if self.time:
            entry["Time"] = self.time
        return entry


def check(event: OrderEvent) -> None:
    """The checks OrderEventsFunction makes, before the event leaves: a clear message here, not a dead letter."""
    detail = event.detail
    if event.detail_type not in DETAIL_TYPES:
        raise CommerceError(f"detail-type must be OrderPlaced or OrderRefunded, not {event.detail_type!r}")
    if event.detail_type == ORDER_PLACED:
        if not (detail.get("member_id") or detail.get("customer_id")):
            raise CommerceError("OrderPlaced: the detail names member_id or customer_id")
        model: type[Purchase] | type[Refund] = Purchase
    else:
        if not detail.get("refund_id"):
            raise CommerceError(
                "OrderRefunded: refund_id is required (the refund's identity: the same refund twice reverses once)"
            )
        model = Refund
    try:
        model.model_validate({k: v for k, v in detail.items() if k in model.model_fields and k != "type"})
    except ValidationError as error:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'detail'}: {e['msg']}" for e in error.errors())
        raise CommerceError(f"{event.label}: {reasons}") from None
    if event.source != SOURCE:
        print(f"warning: source {event.source!r}: the stack's rule takes source {SOURCE!r}", file=sys.stderr)


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"an amount is a number above 0, not {text!r}")
    return value


def _line(text: str) -> dict[str, Any]:
    """sku:category:amount[:quantity]; sku or category may be empty (":skincare:40")."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"a line is sku:category:amount[:quantity], not {text!r}")
    sku, category, amount = parts[:3]
    line: dict[str, Any] = {"amount": _number(_amount(amount))}
    if sku:
        line["sku"] = sku
    if category:
        line["category"] = category
    if len(parts) == 4:
        if not parts[3].isdigit() or int(parts[3]) < 1:
            raise argparse.ArgumentTypeError(f"a line's quantity is a whole number above 0, not {parts[3]!r}")
        line["quantity"] = int(parts[3])
    return line


def _number(value: Decimal) -> int | float:
    """JSON as a commerce system would send it: 120.5, 40."""
    return int(value) if value == value.to_integral_value() else float(value)


def placed(args: argparse.Namespace) -> list[OrderEvent]:
    detail: dict[str, Any] = {"order_id": args.order}
    detail["member_id" if args.member else "customer_id"] = args.member or args.customer
    detail.update(amount=_number(args.amount), currency=args.currency)
    if args.occurred_at:
        detail["occurred_at"] = args.occurred_at
    if args.line:
        detail["line_items"] = args.line
    return [OrderEvent(ORDER_PLACED, detail)]


def refunded(args: argparse.Namespace) -> list[OrderEvent]:
    detail: dict[str, Any] = {"order_id": args.order, "refund_id": args.refund, "amount": _number(args.amount)}
    if args.occurred_at:
        detail["occurred_at"] = args.occurred_at
    return [OrderEvent(ORDER_REFUNDED, detail)]


def from_json(document: Any, detail_type: str | None = None) -> list[OrderEvent]:
    """Events from a sample event, a PutEvents entry, a bare detail, or a list of these."""
    items = document if isinstance(document, list) else [document]
    if not items:
        raise CommerceError("no events in the file")
    events = []
    for index, item in enumerate(items):
        where = f"item {index}: " if isinstance(document, list) else ""
        if not isinstance(item, dict):
            raise CommerceError(f"{where}an event is a JSON object")
        if "detail-type" in item or "detail" in item:  # an EventBridge event (events/*.json)
            events.append(
                OrderEvent(
                    str(item.get("detail-type") or detail_type or ""),
                    _object(item.get("detail"), f"{where}detail"),
                    str(item.get("source") or SOURCE),
                    item.get("time"),
                    list(item.get("resources") or []),
                )
            )
        elif "DetailType" in item or "Detail" in item:  # a PutEvents entry
            raw = item.get("Detail")
            try:
                body = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                raise CommerceError(f"{where}Detail is not JSON") from None
            events.append(
                OrderEvent(
                    str(item.get("DetailType") or detail_type or ""),
                    _object(body, f"{where}Detail"),
                    str(item.get("Source") or SOURCE),
                    None,
                    list(item.get("Resources") or []),
                )
            )
        else:  # a bare detail
            kind = detail_type or (ORDER_REFUNDED if "refund_id" in item else None)
            if kind is None and ("currency" in item or "customer_id" in item or "member_id" in item):
                kind = ORDER_PLACED
            if kind is None:
                raise CommerceError(f"{where}a bare detail needs --detail-type OrderPlaced or OrderRefunded")
            events.append(OrderEvent(kind, item))
    return events


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CommerceError(f"{what} must be a JSON object")
    return value


def send(args: argparse.Namespace) -> list[OrderEvent]:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except OSError as error:
        raise CommerceError(f"cannot read {args.file}: {error.strerror or error}") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise CommerceError(f"{args.file} is not JSON: {error}") from None
    return from_json(document, args.detail_type)


# --- the stack --------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The running local stack, as its gateway describes itself."""

    api: str
    moto: str
    bus: str
    rule_poller: str | None

    @classmethod
    def find(cls, api: str) -> Stack:
        status = _get_json(api, "/_local/status")
        moto = (status.get("endpoints") or {}).get("moto")
        if not moto:
            raise CommerceError(f"{api}/_local/status does not give the stack's moto endpoint")
        bus, poller = _commerce_bus(status)
        return cls(api.rstrip("/"), moto, bus, poller)

    def rule_counters(self) -> dict[str, Any]:
        """The OrderEventsFunction rule poller's counters (failures show why an effect did not come)."""
        if self.rule_poller is None:
            return {}
        for poller in _get_json(self.api, "/_local/status").get("pollers") or []:
            if poller.get("name") == self.rule_poller:
                return dict(poller)
        return {}

    def domain_events(self, detail_type: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"detail_type": detail_type})
        return list(_get_json(self.api, f"/_local/events?{query}").get("events") or [])

    def put_events(self, events: list[OrderEvent]) -> list[str]:
        """PutEvents on the stack's bus, 10 at a time; the event ids, in order."""
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "events",
            endpoint_url=self.moto,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the emulator's fake credentials
            aws_session_token="testing",  # noqa: S106
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=15),
        )
        ids: list[str] = []
        for start in range(0, len(events), PUT_EVENTS_BATCH):
            batch = events[start : start + PUT_EVENTS_BATCH]
            entries: Any = [e.entry(self.bus) for e in batch]
            answer = client.put_events(Entries=entries)
            for event, result in zip(batch, answer["Entries"], strict=True):
                if "EventId" not in result:
                    raise CommerceError(
                        f"{event.label}: the bus refused it: {result.get('ErrorCode')} {result.get('ErrorMessage')}"
                    )
                ids.append(result["EventId"])
        return ids


def _commerce_bus(status: Mapping[str, Any]) -> tuple[str, str | None]:
    """The bus whose rule takes commerce events (and that rule's poller), from the stack's status."""
    for poller in status.get("pollers") or []:
        if poller.get("kind") != "eventbridge-rule":
            continue
        for bus, pattern in (poller.get("rules") or {}).items():
            sources = (pattern or {}).get("source") or []
            types = (pattern or {}).get("detail-type") or list(DETAIL_TYPES)
            if SOURCE in sources and ORDER_PLACED in types:
                return str(bus), poller.get("name")
    buses = list(((status.get("resources") or {}).get("buses") or {}).values())
    if len(buses) == 1:
        return str(buses[0]), None
    raise CommerceError("the stack has no EventBridge rule for source 'commerce' (see GET /_local/status)")


def _get_json(api: str, path: str) -> dict[str, Any]:
    url = api.rstrip("/") + path
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the local gateway's URL
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        raise CommerceError(
            f"{url} answered {error.code}: is {api} the local stack (python -m devstack), not another server?"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CommerceError(
            f"no local stack at {api} ({reason}). Start it with `make run` (python -m devstack), or point --api at it."
        ) from None
    except ValueError:
        raise CommerceError(f"{url} did not answer JSON: is {api} the local stack?") from None


# --- the command ------------------------------------------------------------------------------------------------


def _show(event: Mapping[str, Any]) -> str:
    return f"{event.get('detail-type')}  {json.dumps(event.get('detail'), default=str)}"


def _key(event: Mapping[str, Any]) -> str:
    detail = event.get("detail") or {}
    return str(detail.get("event_id") or event.get("id") or json.dumps(event, sort_keys=True, default=str))


def _matching(events: Iterable[dict[str, Any]], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [e for e in events if all((e.get("detail") or {}).get(k) == v for k, v in values.items())]


def wait_for_effects(
    stack: Stack, events: list[OrderEvent], before: dict[str, set[str]], wait: float, out: TextIO
) -> int:
    """Print the domain event each posted event caused; how many showed none within `wait` seconds."""
    pending = {i: e.effect() for i, e in enumerate(events)}
    shown: set[str] = set()
    deadline = time.monotonic() + wait
    while pending:
        current = {kind: stack.domain_events(kind) for kind in {kind for kind, _ in pending.values()}}
        for index, (kind, values) in list(pending.items()):
            found = _matching(current[kind], values)
            earlier = [e for e in found if _key(e) in before[kind]]
            again = [e for e in found if _key(e) in shown]
            new = [e for e in found if _key(e) not in before[kind] and _key(e) not in shown]
            if earlier:  # applied before this run: the same order or refund again changes nothing
                print(f"{_show(earlier[-1])}  (seen before: applied once, this one changed nothing)", file=out)
                del pending[index]
            elif again and not new:  # the same order or refund twice in this run
                print(f"{events[index].label}: the same as above, applied once", file=out)
                del pending[index]
            elif new:
                for event in new:
                    shown.add(_key(event))
                    print(_show(event), file=out)
                del pending[index]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return len(pending)


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    default_api = os.environ.get("LOYALTY_API") or f"http://127.0.0.1:{os.environ.get('PORT') or 3000}"
    parser = argparse.ArgumentParser(
        prog="python -m devstack.commerce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api", default=default_api, help=f"the local stack's API (default: $LOYALTY_API or {default_api})"
    )
    common.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for the resulting domain events (default 10; 0: none)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="placed|refunded|send")

    place = commands.add_parser("placed", parents=[common], help="post an OrderPlaced")
    who = place.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", help="the shopper's id in the commerce system (the member's external id)")
    who.add_argument("--member", help="the member id (m_...)")
    place.add_argument("--order", required=True, help="the order id")
    place.add_argument("--amount", required=True, type=_amount, help="the order total that earns points")
    place.add_argument("--currency", required=True, type=str.upper, help="ISO 4217 code, e.g. USD")
    place.add_argument(
        "--line", action="append", type=_line, metavar="SKU:CATEGORY:AMOUNT[:QTY]", help="a line item (repeatable)"
    )
    place.add_argument("--occurred-at", help="when the order was placed (ISO 8601 with offset; default: now)")
    place.set_defaults(build=placed)

    refund = commands.add_parser("refunded", parents=[common], help="post an OrderRefunded")
    refund.add_argument("--order", required=True, help="the refunded order's id")
    refund.add_argument("--refund", required=True, help="the refund's id: the same refund again reverses nothing")
    refund.add_argument("--amount", required=True, type=_amount, help="the amount refunded")
    refund.add_argument("--occurred-at", help="when the refund happened (ISO 8601 with offset)")
    refund.set_defaults(build=refunded)

    post = commands.add_parser("send", parents=[common], help="post the event(s) of a JSON file (- for stdin)")
    post.add_argument("file", help="a sample event (events/order_events_*.json), a bare detail, or a list")
    post.add_argument("--detail-type", choices=DETAIL_TYPES, help="the type of a bare detail (default: guessed)")
    post.set_defaults(build=send)

    args = parser.parse_args(argv)
    try:
        events = args.build(args)
        for event in events:
            check(event)
        stack = Stack.find(args.api)
        kinds = {event.effect()[0] for event in events}
        before = {kind: {_key(e) for e in stack.domain_events(kind)} for kind in kinds}
        counters = stack.rule_counters()
        ids = stack.put_events(events)
    except CommerceError as error:
        print(f"devstack.commerce: {error}", file=sys.stderr)
        return 2
    for event, event_id in zip(events, ids, strict=True):
        print(f"{event.label} -> bus {stack.bus}: event id {event_id}", file=out)
    if args.wait <= 0:
        return 0
    try:
        missing = wait_for_effects(stack, events, before, args.wait, out)
        if not missing:
            return 0
        after = stack.rule_counters()
    except CommerceError as error:
        print(f"devstack.commerce: {error}", file=sys.stderr)
        return 2
    failed = int(after.get("failed_attempts") or 0) - int(counters.get("failed_attempts") or 0)
    why = (
        f"OrderEventsFunction failed {failed} time(s): {after.get('last_error')} (it retries, then parks the event "
        "in its dead-letter queue)"
        if failed > 0
        else "an order from a customer who is not a member earns nothing, a refund of an order that earned nothing "
        "reverses nothing, or the stack is busy (try --wait 30; the stack's log says more)"
    )
    print(f"devstack.commerce: {missing} event(s) showed no effect within {args.wait:g} s: {why}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
