"""Make moto's DynamoDB isolate concurrent requests, as DynamoDB does.

moto's `transact_write_items` deep-copies the tables, applies the items one by one without a lock, and on a failed
condition restores the copy, wiping what other threads wrote meanwhile; concurrent requests can also fail with
"dictionary changed size during iteration". Measured here: 50 concurrent 10-point redemptions on 100 points
answered 11 successes in 1 to 3 runs of 10, and two threads could enroll the same external id twice.

moto runs in this process (in server mode too: ThreadedMotoServer is a thread), so one lock around its DynamoDB and
DynamoDB Streams request handlers serialises them. That costs moto nothing it had (it handles one request at a time
under the GIL anyway) and makes the moto-backed stack honest for the ledger's concurrency guarantees. DynamoDB
Local needs none of this: it is the faithful emulator, and the one the concurrency tests treat as the judge.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_applied = False


def isolate_moto_dynamodb() -> None:
    """Serialise moto's DynamoDB request handling (idempotent; call before requests are made)."""
    global _applied
    with _LOCK:
        if _applied:
            return
        from moto.dynamodb.responses import DynamoHandler
        from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

        for handler in (DynamoHandler, DynamoDBStreamsHandler):
            original = handler.call_action

            @functools.wraps(original)
            def serialised(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
                with _LOCK:
                    return __original(self, *args, **kwargs)

            handler.call_action = serialised  # type: ignore[method-assign]
        _applied = True
