"""The local stack runs every function in one process, requests in threads: each log line still names the function
(and carries the correlation id) of the invocation that wrote it, as it would on Lambda, one process per function."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.functions import FunctionHost
from devstack.template import load_template
from loyalty import runtime
from loyalty.core.idempotency import Outcome
from loyalty.core.observability import logger

ROOT = Path(__file__).resolve().parents[2]
MEMBER_ID = "m_01m83p8nz4nsv851aw9hcrayax"


class Lines(logging.Handler):
    """Each record formatted as it is written, in the thread that wrote it (as Lambda's stdout would get it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []
        self.setFormatter(logger.registered_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    handler = Lines()
    logging.getLogger(logger.service).addHandler(handler)
    yield handler.lines
    logging.getLogger(logger.service).removeHandler(handler)


class SlowPurchase:
    """The loyalty service, answering a purchase only once `release` is set: the purchase is in flight meanwhile."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.store = self

    def member_id_for_external(self, external_id: str) -> str:
        return MEMBER_ID

    def purchase(self, member_id: str, purchase: Any) -> Outcome:
        self.entered.set()
        assert self.release.wait(10)
        return Outcome(201, {"entry": {"entry_id": "01M83P8P1WRPWN7H1NJYT2SE3Q", "kind": "earn", "points": 120}})


def test_two_functions_running_at_once_in_one_process_each_log_under_their_own_name(
    lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SlowPurchase()
    monkeypatch.setattr(runtime, "loyalty_service", lambda: service)
    monkeypatch.setattr(runtime, "segmentation_service", lambda: object())
    host = FunctionHost(load_template(ROOT / "template.yaml"), {"OrderEventsFunction": "loyalty-OrderEventsFunction"})
    order = json.loads((ROOT / "events" / "order_events_order_placed.json").read_text())
    # Given an order event whose purchase is in flight
    in_flight = threading.Thread(target=host.invoke, args=("OrderEventsFunction", order))
    in_flight.start()
    assert service.entered.wait(10)
    # When another function runs to the end meanwhile, and then the purchase finishes
    host.invoke("SegmentReevaluationFunction", {"Records": []})
    service.release.set()
    in_flight.join(10)
    # Then each line names its own function, and only the order's lines carry the order event's id
    by_message = {line["message"]: line for line in lines}
    applied, reevaluated = by_message["order event applied"], by_message["members re-evaluated"]
    assert applied["function_name"] == "loyalty-OrderEventsFunction"
    assert applied["correlation_id"] == order["id"]
    assert applied["cold_start"] is True
    assert reevaluated["function_name"] == "SegmentReevaluationFunction"
    assert "correlation_id" not in reevaluated
    assert applied["function_request_id"] != reevaluated["function_request_id"]
