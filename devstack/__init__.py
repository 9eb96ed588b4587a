"""The local development stack: template.yaml run on this machine, with no AWS account and no Docker.

Everything it wires (routes, rules, stream filters, tables, queues, buses) is read from template.yaml; nothing is
listed a second time here. Start it with `python -m devstack` or use `devstack.stack.LocalStack` in tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.stack import LocalStack

__all__ = ["LocalStack"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m devstack.dynamodb_local install` does not import moto and boto3.
    if name == "LocalStack":
        from devstack.stack import LocalStack

        return LocalStack
    raise AttributeError(name)
