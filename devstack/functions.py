"""Run the template's functions in-process, one request per container at a time, as Lambda does.

A "container" is a separately loaded copy of the function's handler module. Powertools' resolvers keep the
current event on the module-level `app`, so one copy must never serve two requests at once: a request checks out
an idle container or, when none is idle, loads a new one (a cold start), and returns it after the call. Layer
modules (`loyalty.*`) are ordinary imports shared by every container, like the code a warm Lambda keeps in memory.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from devstack.template import ACCOUNT_ID, REGION, Function, Template

log = logging.getLogger("devstack.functions")

_module_ids = itertools.count(1)
_sys_path_lock = threading.Lock()


class LambdaContext:
    """What Lambda hands a handler as `context` (the attributes Powertools and handlers read)."""

    def __init__(
        self,
        function_name: str,
        memory_limit_in_mb: int,
        timeout_seconds: int,
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
    ):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class InvocationError(Exception):
    """The handler raised. `error_type`, `error_message` and `stack_trace` are what Lambda would report."""

    def __init__(self, function: str, error: BaseException):
        self.function = function
        self.error = error
        self.error_type = type(error).__name__
        self.error_message = str(error)
        self.stack_trace = traceback.format_exception(error)
        super().__init__(f"{function} raised {self.error_type}: {self.error_message}")

    def payload(self) -> dict[str, Any]:
        return {"errorMessage": self.error_message, "errorType": self.error_type, "stackTrace": self.stack_trace}


@dataclass
class Container:
    """One loaded copy of a handler module: serves one request at a time."""

    number: int
    module: ModuleType
    handler: Callable[[Any, Any], Any]
    init_ms: float
    invocations: int = 0


@dataclass
class FunctionStats:
    cold_starts: int = 0
    invocations: int = 0
    errors: int = 0
    busy: int = 0
    init_ms: list[float] = field(default_factory=list)
    timeouts_exceeded: int = 0


class _PerRequest:
    """A value each thread sees on its own: each in-flight request runs in its own thread."""

    def __init__(self, name: str):
        self._name = name
        self._local = threading.local()

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        try:
            return self._local.value
        except AttributeError:
            raise AttributeError(self._name) from None

    def __set__(self, obj: object, value: Any) -> None:
        self._local.value = value

    def __delete__(self, obj: object) -> None:
        self._local.__dict__.pop("value", None)


def isolate_powertools_requests() -> bool:
    """Give each request its own Powertools `current_event` and `lambda_context`.

    Separate copies of a handler module are not enough: Powertools' REST resolver stores the current event on the
    *class* (`BaseRouter.current_event = ...` in `resolve()`), shared by every resolver in the process, so two
    concurrent requests in two containers read each other's headers, claims and body. On Lambda one process serves
    one request at a time; here both attributes become per-thread, class-level and instance-level alike (a
    metaclass descriptor catches `BaseRouter.current_event = x`, a class descriptor `self.current_event`).
    Returns False when Powertools (or that attribute) is not there.
    """
    try:
        from aws_lambda_powertools.event_handler import api_gateway
    except ImportError:
        return False
    base = getattr(api_gateway, "BaseRouter", None)
    if base is None:
        return False
    if base.__dict__.get("_devstack_per_request"):
        return True
    slots = {name: _PerRequest(name) for name in ("current_event", "lambda_context")}
    for name, slot in slots.items():
        type.__setattr__(base, name, slot)
    metaclass = type(base)
    base.__class__ = type(f"PerRequest{metaclass.__name__}", (metaclass,), dict(slots))
    type.__setattr__(base, "_devstack_per_request", True)
    return True


class FunctionPool:
    """The containers of one function. `invoke(event)` runs the handler in an idle container, or a new one."""

    def __init__(self, function: Function, physical_name: str, max_containers: int | None = None):
        self.function = function
        self.physical_name = physical_name
        self.max_containers = max_containers
        self.stats = FunctionStats()
        self._idle: list[Container] = []
        self._count = 0
        self._condition = threading.Condition()

    def _load(self, number: int) -> Container:
        function = self.function
        path = function.handler_file
        if not path.is_file():
            raise FileNotFoundError(
                f"{function.logical_id}: handler file {path} not found (CodeUri "
                f"{function.code_uri}, Handler {function.handler})"
            )
        with _sys_path_lock:
            # Lambda puts the function's code folder on sys.path: sibling modules import by their plain names.
            if str(function.code_uri) not in sys.path:
                sys.path.insert(0, str(function.code_uri))
        name = f"devstack_fn_{function.logical_id}_{next(_module_ids)}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        started = time.perf_counter()
        sys.modules[name] = module  # dataclasses and pydantic look their module up here while it loads
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        init_ms = (time.perf_counter() - started) * 1000
        handler = getattr(module, function.handler_function, None)
        if not callable(handler):
            raise AttributeError(f"{function.logical_id}: {path} has no callable {function.handler_function!r}")
        return Container(number=number, module=module, handler=handler, init_ms=init_ms)

    @contextmanager
    def container(self) -> Iterator[Container]:
        """Check out an idle container (warm) or load a new one (cold); give it back afterwards."""
        with self._condition:
            while not self._idle and self.max_containers is not None and self._count >= self.max_containers:
                self._condition.wait()
            if self._idle:
                chosen: Container | None = self._idle.pop()
            else:
                chosen = None
                self._count += 1
                number = self._count
            self.stats.busy += 1
        try:
            if chosen is None:
                try:
                    chosen = self._load(number)
                except BaseException:
                    with self._condition:
                        self._count -= 1
                        self._condition.notify()
                    raise
                with self._condition:
                    self.stats.cold_starts += 1
                    self.stats.init_ms.append(round(chosen.init_ms, 1))
                log.debug("%s: cold start #%d (%.0f ms)", self.function.logical_id, number, chosen.init_ms)
            yield chosen
        finally:
            with self._condition:
                self.stats.busy -= 1
                if chosen is not None:
                    self._idle.append(chosen)
                self._condition.notify()

    def invoke(self, event: Any) -> Any:
        """Run the handler with `event`; raises InvocationError when the handler raises."""
        with self.container() as container:
            context = LambdaContext(self.physical_name, self.function.memory_size, self.function.timeout)
            started = time.monotonic()
            try:
                return container.handler(event, context)
            except Exception as error:
                with self._condition:
                    self.stats.errors += 1
                raise InvocationError(self.function.logical_id, error) from error
            finally:
                elapsed = time.monotonic() - started
                container.invocations += 1
                with self._condition:
                    self.stats.invocations += 1
                    if elapsed > self.function.timeout:
                        self.stats.timeouts_exceeded += 1
                if elapsed > self.function.timeout:
                    # Lambda would have stopped it; a thread cannot be stopped, so say it loudly instead.
                    log.warning(
                        "%s ran %.1f s, past its Timeout of %d s: Lambda would have ended it",
                        self.function.logical_id,
                        elapsed,
                        self.function.timeout,
                    )

    def status(self) -> dict[str, Any]:
        with self._condition:
            return {
                "handler": self.function.handler,
                "code_uri": str(self.function.code_uri),
                "containers": self._count,
                "idle": len(self._idle),
                "busy": self.stats.busy,
                "cold_starts": self.stats.cold_starts,
                "invocations": self.stats.invocations,
                "errors": self.stats.errors,
                "init_ms": list(self.stats.init_ms[-10:]),
                "timeouts_exceeded": self.stats.timeouts_exceeded,
            }


class FunctionHost:
    """Every function of the template, each with its container pool."""

    def __init__(
        self, template: Template, physical_names: Mapping[str, str] | None = None, max_containers: int | None = None
    ):
        self.template = template
        names = physical_names or {}
        isolate_powertools_requests()
        self.pools = {
            logical_id: FunctionPool(function, names.get(logical_id, logical_id), max_containers)
            for logical_id, function in template.functions.items()
        }

    def pool(self, logical_id: str) -> FunctionPool:
        try:
            return self.pools[logical_id]
        except KeyError:
            raise KeyError(
                f"no function {logical_id!r} in the template; there are: {', '.join(sorted(self.pools))}"
            ) from None

    def invoke(self, logical_id: str, event: Any) -> Any:
        return self.pool(logical_id).invoke(event)

    def status(self) -> dict[str, Any]:
        return {logical_id: pool.status() for logical_id, pool in self.pools.items()}


def add_layers_to_path(template: Template) -> list[Path]:
    """Put each layer's Python folder on sys.path, as Lambda does with /opt/python. Returns the folders added."""
    added: list[Path] = []
    for layer in template.layers.values():
        # `sam build` installs a layer's content under python/; a source layer may hold packages at its root.
        folder = layer.content_uri / "python" if (layer.content_uri / "python").is_dir() else layer.content_uri
        with _sys_path_lock:
            if folder.is_dir() and str(folder) not in sys.path:
                sys.path.append(str(folder))
                added.append(folder)
    return added


def reset_layer_runtimes(template: Template) -> list[str]:
    """Call `reset()` of every loaded `<package>.runtime` module that comes from a layer of the template.

    Layer code builds its clients once per container (lazily, cached); after the stack changes endpoints or stops,
    those cached clients point at emulators that are gone. The layer's runtime module is where that cache lives,
    and its `reset()` forgets it.
    """
    roots = [str(layer.content_uri) + os.sep for layer in template.layers.values()]
    called = []
    for name, module in list(sys.modules.items()):
        if not name.endswith(".runtime") or module is None:
            continue
        origin = getattr(module, "__file__", None) or ""
        reset = getattr(module, "reset", None)
        if callable(reset) and any(origin.startswith(root) for root in roots):
            reset()
            called.append(name)
    return called
