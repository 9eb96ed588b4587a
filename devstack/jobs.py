"""Run one of the stack's jobs now: start an execution of a state machine of the running local stack (the tier
review, the daily points expiry, the segment refresh) with an input, wait for it, print its output.

    python -m devstack.jobs PointsExpiryStateMachine --input '{"day": "2027-12-31"}'
    python -m devstack.jobs TierReviewStateMachine

Finds the stack's moto endpoint and state machines at GET <api>/_local/status (PORT, default 3000), as
devstack.commerce does. A schedule starts the same executions; this is "now", with a chosen day for a re-run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
import uuid
from typing import Any

import boto3


def _status(api: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{api}/_local/status", timeout=10) as answer:  # noqa: S310 - localhost only
        return dict(json.load(answer))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("state_machine", help="its logical id in template.yaml, e.g. PointsExpiryStateMachine")
    parser.add_argument("--input", default="{}", help="the execution's input (JSON)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    api = f"http://127.0.0.1:{os.environ.get('PORT', '3000')}"
    status = _status(api)
    machines = (status.get("resources") or {}).get("state_machines") or {}
    if args.state_machine not in machines:
        print(f"no state machine {args.state_machine}; the stack has: {', '.join(sorted(machines))}", file=sys.stderr)
        return 2
    client = boto3.client(
        "stepfunctions",
        endpoint_url=status["endpoints"]["moto"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - the emulator's fake credentials
    )
    started = client.start_execution(
        stateMachineArn=machines[args.state_machine], name=f"now-{uuid.uuid4().hex[:12]}", input=args.input
    )
    deadline = time.monotonic() + args.timeout
    while True:
        described = client.describe_execution(executionArn=started["executionArn"])
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(f"{args.state_machine} {described['status']}")
    if "output" in described:
        print(json.dumps(json.loads(described["output"]), indent=2))
    return 0 if described["status"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
