"""Step Functions on this machine: moto's ASL interpreter runs the template's state machines, and their Lambda tasks
run the template's handlers in this process.

moto executes a state machine once `{"stepfunctions": {"execute_state_machine": true}}` is posted to its
`/moto-api/config`; a task then calls the service it names on `localhost:$MOTO_PORT` (server mode). A Lambda task
becomes moto's Lambda Invoke, which would want Docker; the moto server runs in this process (a thread), so its
Lambda backend's `invoke` is wrapped here to hand the event to the in-process handler registered under the
function's name, and to answer as Lambda does: the handler's return value as the payload, or, when it raises,
`X-Amz-Function-Error: Unhandled` with `{errorType, errorMessage, stackTrace}` (the task fails with errorType as its
error name, which the definition's Retry and Catch match). Functions nobody registered go to moto as before.

What moto 5.2's interpreter runs, and what it lacks, is in docs/refresh.md ("Locally").
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from devstack.template import Resolver, Resource

Handler = Callable[[Any], Any]

_routes: dict[str, Handler] = {}
_lock = threading.Lock()
_installed = False


def function_name(name_or_arn: str) -> str:
    """The function name in a FunctionName as Invoke takes it: a name, a partial or full ARN, with a qualifier."""
    if ":function:" in name_or_arn:
        name_or_arn = name_or_arn.split(":function:", 1)[1]
    elif name_or_arn.count(":") == 2:  # account-id:function:name, without the ARN's prefix
        name_or_arn = name_or_arn.rsplit(":", 1)[1]
    return name_or_arn.split(":", 1)[0]


def route_lambda_invocations(routes: Mapping[str, Handler]) -> None:
    """Run Invoke of these functions (by name) with these handlers. Each handler takes the event and returns the
    payload; an exception it raises becomes the function error Lambda reports."""
    _install()
    with _lock:
        _routes.update(routes)


def unroute_lambda_invocations(names: list[str] | tuple[str, ...] | Mapping[str, Any]) -> None:
    with _lock:
        for name in names:
            _routes.pop(name, None)


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        from moto.awslambda.models import LambdaBackend

        original = LambdaBackend.invoke

        def invoke(
            self: Any, function: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
        ) -> Any:
            with _lock:
                handler = _routes.get(function_name(function))
            if handler is None:
                return original(self, function, qualifier, body, headers, response_headers)
            raw = body.decode() if isinstance(body, bytes) else body
            event = json.loads(raw) if raw else {}
            try:
                result = handler(event)
            except Exception as error:
                cause = getattr(error, "error", None) or error  # devstack's InvocationError carries the handler's
                payload = {
                    "errorType": type(cause).__name__,
                    "errorMessage": str(cause),
                    "stackTrace": traceback.format_exception(cause),
                }
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(payload).encode()
            return json.dumps(result, default=str).encode()

        LambdaBackend.invoke = invoke  # type: ignore[method-assign]
        _installed = True


def enable_execution(moto_endpoint: str) -> None:
    """Make the moto server execute state machines (a setting of the whole process's moto)."""
    request = urllib.request.Request(  # noqa: S310 - our own loopback server
        f"{moto_endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


def definition(resource: Resource, resolver: Resolver) -> str:
    """A state machine's definition as Step Functions gets it: DefinitionUri's file (JSON or YAML) or Definition,
    with DefinitionSubstitutions resolved and applied."""
    props = resource.properties
    if props.get("Definition") is not None:
        document = resolver.resolve(props["Definition"])
    else:
        uri = props.get("DefinitionUri")
        if not isinstance(uri, str):
            raise ValueError(f"{resource.logical_id}: DefinitionUri must be a local file to run locally")
        path = Path(resolver.template.root) / uri
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    text = json.dumps(document)
    for name, value in (resolver.resolve(props.get("DefinitionSubstitutions")) or {}).items():
        text = text.replace("${" + name + "}", str(value))
    return text


def create_state_machines(resolver: Resolver, stepfunctions: Any) -> dict[str, str]:
    """Create every state machine of the template in moto (or update it). Returns logical id -> ARN, and records
    the ARN in the resolver."""
    created: dict[str, str] = {}
    for resource in resolver.template.state_machines:
        name = resolver.physical_name(resource.logical_id)
        text = definition(resource, resolver)
        role = f"arn:aws:iam::{resolver.account_id}:role/{name}-role"
        kind = str(resolver.resolve(resource.properties.get("Type")) or "STANDARD")
        arn = resolver.arn(resource.logical_id)
        try:
            arn = stepfunctions.create_state_machine(name=name, definition=text, roleArn=role, type=kind)[
                "stateMachineArn"
            ]
        except stepfunctions.exceptions.StateMachineAlreadyExists:
            stepfunctions.update_state_machine(stateMachineArn=arn, definition=text, roleArn=role)
        resolver.set_attribute(resource.logical_id, "Arn", arn)
        created[resource.logical_id] = arn
    return created


def wait_for_execution(stepfunctions: Any, execution_arn: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the execution is no longer RUNNING; its description (status, output, error, cause)."""
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = stepfunctions.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution_arn} still running after {timeout} s")
        time.sleep(0.05)


class StepFunctionsServer:
    """A moto server (a thread of this process) that executes state machines, for tests and the bench: what the
    local stack sets up, without the rest of the stack. Sets MOTO_PORT while it runs."""

    def __init__(self, region: str = "us-east-1") -> None:
        import os

        import boto3
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._saved_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(port)  # where the interpreter's tasks call Lambda
        enable_execution(self.endpoint)
        self.client = boto3.client(
            "stepfunctions",
            region_name=region,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the emulator's fake credentials
        )

    def stop(self) -> None:
        import os

        if self._saved_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = self._saved_port
        self._server.stop()


class TemplateJob:
    """One state machine of a template, made in a StepFunctionsServer under a stack name of its own, its Lambda
    tasks run by the handlers given per function logical id."""

    def __init__(
        self,
        server: StepFunctionsServer,
        template: Any,
        state_machine: str,
        handlers: Mapping[str, Handler],
        stack_name: str,
    ):
        self.server = server
        resolver = Resolver(template, stack_name=stack_name)
        self.state_machine_arn = create_state_machines(resolver, server.client)[state_machine]
        self._routes = {resolver.physical_name(logical_id): handler for logical_id, handler in handlers.items()}
        route_lambda_invocations(self._routes)

    def wait(self, execution_arn: str, timeout: float = 300.0) -> dict[str, Any]:
        """Wait for the execution; its description. Raises if it did not succeed."""
        described = wait_for_execution(self.server.client, execution_arn, timeout)
        if described["status"] != "SUCCEEDED":
            raise AssertionError(
                f"{execution_arn} {described['status']}: {described.get('error')} {described.get('cause')}"
            )
        return described

    def close(self) -> None:
        unroute_lambda_invocations(self._routes)
