"""`python -m devstack`: the whole stack on this machine until Ctrl-C (or SIGTERM), seeded with the demo program.

python -m devstack [--port 3000] [--dynamodb auto|local|moto] [--no-seed]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from devstack.stack import LocalStack, StackError


def demo_seed() -> Callable[[LocalStack], Any] | None:
    """devstack.seed.seed(stack), if that module exists."""
    try:
        module = importlib.import_module("devstack.seed")
    except ModuleNotFoundError as error:
        if error.name != "devstack.seed":
            raise
        return None
    seed = getattr(module, "seed", None)
    return seed if callable(seed) else None


def _forgiving(seed: Callable[[LocalStack], Any]) -> Callable[[LocalStack], Any]:
    def run(stack: LocalStack) -> None:
        try:
            seed(stack)
        except Exception:
            traceback.print_exc()
            print("devstack: the demo seed failed (above); the stack runs without it", file=sys.stderr)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 3000),
        help="gateway port (default: $PORT or 3000; 0 picks a free one)",
    )
    parser.add_argument(
        "--dynamodb",
        choices=["auto", "local", "moto"],
        default=os.environ.get("DEVSTACK_DYNAMODB", "auto"),
        help="DynamoDB Local (needs java), moto, or auto: DynamoDB Local when java is present",
    )
    parser.add_argument(
        "--allowed-origins",
        default=os.environ.get("ALLOWED_ORIGINS", "http://localhost:5173,http://127.0.0.1:5173"),
        help="the template's AllowedOrigins: origins whose browser apps may call the API (default: a local web "
        "app's dev server on port 5173; '' for none)",
    )
    parser.add_argument("--no-seed", action="store_true", help="start empty, without the demo program")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logs from the local stack")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("devstack").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    seed = None if args.no_seed else demo_seed()
    try:
        stack = LocalStack(
            dynamodb=args.dynamodb,
            port=args.port,
            seed=_forgiving(seed) if seed else None,
            parameters={"AllowedOrigins": args.allowed_origins},
        )
    except OSError as error:
        print(f"devstack: could not read the template: {error}", file=sys.stderr)
        return 1
    try:
        stack.start()
    except (StackError, OSError) as error:
        print(f"devstack: could not start: {error}", file=sys.stderr)
        stack.stop()
        return 1
    try:
        api = stack.api_url
        print(
            f"""
Serverless Loyalty, local stack ({stack.template_path.name}, stack name {stack.stack_name})
  API          {api}  (start here: {api}/)
  Swagger UI   {stack.swagger_url or "(no docs route in the template)"}
  Status       {api}/_local/status
  Events       {api}/_local/events
  CORS         {args.allowed_origins or "(no origins)"}
  DynamoDB     {stack.dynamodb_backend} at {stack.dynamodb_endpoint}
  moto         {stack.moto_endpoint} (SQS, SNS, SES, EventBridge)

Try:
  curl -s {api}/v1/rewards -H 'Authorization: Bearer dev:admin:alice'
Tokens: dev:member:<member_id>, dev:user:<sub>, dev:admin:<name>, dev:service:<name>.  Ctrl-C stops.
""",
            flush=True,
        )
        stopping.wait()
    finally:
        print("devstack: stopping", file=sys.stderr, flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
