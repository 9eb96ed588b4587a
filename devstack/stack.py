"""The whole local stack: emulators, resources, functions, pollers and the HTTP gateway, from template.yaml.

    with LocalStack(root=repo, dynamodb="auto", port=0) as stack:
        requests.get(stack.api_url + "/v1/rewards", headers={"Authorization": "Bearer dev:admin:me"})

moto (server mode, in a thread) serves SQS, SNS, SES, EventBridge, Step Functions (its ASL interpreter executes the
state machines, their Lambda tasks routed to the in-process handlers: devstack.states) and, on the "moto" backend,
DynamoDB; AWS's DynamoDB Local serves DynamoDB (and its streams) on the "local" backend. Handlers create plain boto3 clients, so
the stack points the whole process at the emulators through environment variables: one stack per process at a time.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack import dynamodb_local, states
from devstack.functions import FunctionHost, add_layers_to_path, reset_layer_runtimes
from devstack.gateway import ADMIN_GROUP, SERVICE_GROUP, Gateway, GatewayResponses, LocalRoutes, Route
from devstack.moto_isolation import isolate_moto_dynamodb
from devstack.pollers import SQS_CONCURRENCY, Destination, EventTap, Poller, RulePoller, SqsPoller, StreamPoller
from devstack.resources import CreatedResources, create_resources
from devstack.template import ACCOUNT_ID, DEFAULT_STACK_NAME, REGION, Resolver, SqsEvent, Template, load_template

log = logging.getLogger("devstack")

REPO_ROOT = Path(__file__).resolve().parents[1]
Backend = Literal["auto", "local", "moto"]

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Would send the process's clients elsewhere than the emulators.
_UNSET = ("AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")

_running: LocalStack | None = None
_running_lock = threading.Lock()


class StackError(RuntimeError):
    pass


class LocalStack:
    """template.yaml running on this machine. A context manager; `start()`/`stop()` for the explicit form.

    dynamodb: "local" (AWS DynamoDB Local; needs java), "moto", or "auto" (DynamoDB Local when java is present).
    port: the gateway's port (0: a free one). seed: called with the running stack, once everything is up.
    dynamodb_endpoint: use this running DynamoDB Local instead of starting one (tests share one per session; give
    each stack its own stack_name then, so table names do not meet).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        dynamodb: Backend = "auto",
        port: int = 3000,
        seed: Callable[[LocalStack], Any] | None = None,
        *,
        template: str = "template.yaml",
        stack_name: str = DEFAULT_STACK_NAME,
        host: str = "127.0.0.1",
        max_containers: int | None = None,
        dynamodb_endpoint: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ):
        if dynamodb not in ("auto", "local", "moto"):
            raise ValueError(f"dynamodb must be auto, local or moto, not {dynamodb!r}")
        self.root = Path(root or REPO_ROOT).resolve()
        self.template_path = self.root / template
        self.requested_backend = dynamodb
        self.port = port
        self.seed = seed
        self.stack_name = stack_name
        self.host = host
        self.max_containers = max_containers
        self.external_dynamodb = dynamodb_endpoint
        self.template: Template = load_template(self.template_path)
        self.parameters = dict(parameters or {})  # template parameter overrides (AllowedOrigins=...)
        self.resolver = Resolver(self.template, stack_name, parameters=self.parameters)
        self.dynamodb_backend: Literal["local", "moto"] | None = None
        self.moto_endpoint = ""
        self.dynamodb_endpoint = ""
        self.resources = CreatedResources()
        self.functions: FunctionHost | None = None
        self.state_machines: dict[str, str] = {}  # logical id -> ARN
        self._lambda_routes: dict[str, Callable[[Any], Any]] = {}
        self.pollers: list[Poller] = []
        self.tap: EventTap | None = None
        self.gateway: Gateway | None = None
        self._moto: Any = None
        self._dynamodb_local: dynamodb_local.DynamoDBLocal | None = None
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._started = False

    # --- lifecycle

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        global _running
        with _running_lock:
            if _running is not None:
                raise StackError(
                    "a LocalStack is already running in this process (on "
                    f"{_running.api_url or 'its way up'}): the endpoints live in os.environ, so only one at a "
                    "time. Stop it first."
                )
            _running = self
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from moto.server import ThreadedMotoServer

        isolate_moto_dynamodb()  # moto's DynamoDB alone lets concurrent transactions overwrite each other

        werkzeug = logging.getLogger("werkzeug")  # moto's server logs every request at INFO
        if werkzeug.level == logging.NOTSET:
            werkzeug.setLevel(logging.WARNING)

        self._moto = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{port}"
        # moto's state lives in the process, not in the server: start from nothing, as a new account would.
        reset = urllib.request.Request(f"{self.moto_endpoint}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - our own loopback server

        self.dynamodb_backend = "local" if self.external_dynamodb else self._choose_backend()
        if self.external_dynamodb:
            self.dynamodb_endpoint = self.external_dynamodb
        elif self.dynamodb_backend == "local":
            self._dynamodb_local = dynamodb_local.start(host=self.host)
            self.dynamodb_endpoint = self._dynamodb_local.endpoint
        else:
            self.dynamodb_endpoint = self.moto_endpoint

        self._set_env(
            {
                **FAKE_CREDENTIALS,
                "MOTO_PORT": str(port),  # where moto's state machine tasks call the services they name
                "AWS_ENDPOINT_URL": self.moto_endpoint,
                "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
                "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.dynamodb_endpoint,
                # moto serves one DynamoDB request at a time (devstack/moto_isolation.py): a burst of concurrent
                # writes can queue for longer than the functions' 5 s read timeout.
                "AWS_READ_TIMEOUT_SECONDS": "60" if self.dynamodb_backend == "moto" else "5",
                # No X-Ray daemon here: the API functions' Tracer stays off (docs/observability.md).
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        for name in _UNSET:
            self._unset_env(name)

        self.resolver = Resolver(
            self.template, self.stack_name, parameters=self.parameters, queue_endpoint=self.moto_endpoint
        )
        self.resources = create_resources(self.resolver, self.client)
        self._set_env(self.function_environment())
        add_layers_to_path(self.template)
        reset_layer_runtimes(self.template)

        names = {fid: self.resolver.physical_name(fid) for fid in self.template.functions}
        self.functions = FunctionHost(self.template, names, self.max_containers)
        if self.template.state_machines:
            states.enable_execution(self.moto_endpoint)
            self.state_machines = states.create_state_machines(self.resolver, self.client("stepfunctions"))
            self._set_env(self.function_environment())  # now with the state machines' ARNs as moto made them
        self._lambda_routes = {name: self._invoker(fid) for fid, name in names.items()}
        states.route_lambda_invocations(self._lambda_routes)
        self.pollers = self._make_pollers()
        for poller in self.pollers:
            poller.setup()
        for poller in self.pollers:
            poller.start()

        routes = [Route(e, self.resolver.stage(e.rest_api)) for e in self.template.api_events]
        local = LocalRoutes(status=self.status, events=lambda t: self.events(t), fire_schedule=self.fire_schedule)
        self.gateway = Gateway(
            routes,
            self.functions,
            local,
            self.host,
            self.port,
            self._cognito_groups(),
            self._gateway_responses(routes),
        ).start()
        log.info(
            "local stack up: API %s, DynamoDB %s (%s), moto %s",
            self.api_url,
            self.dynamodb_endpoint,
            self.dynamodb_backend,
            self.moto_endpoint,
        )
        if self.seed is not None:
            self.seed(self)

    def _choose_backend(self) -> Literal["local", "moto"]:
        if self.requested_backend == "moto":
            return "moto"
        if self.requested_backend == "local":
            if not dynamodb_local.java_available():
                raise StackError("dynamodb='local' needs java on the PATH (or use dynamodb='moto')")
            return "local"
        if not dynamodb_local.java_available():
            log.warning("java not found: DynamoDB is served by moto (slower, less faithful than DynamoDB Local)")
            return "moto"
        try:
            dynamodb_local.ensure_installed()
        except dynamodb_local.DynamoDBLocalError as error:
            log.warning("DynamoDB Local is not installed and could not be (%s): using moto's DynamoDB", error)
            return "moto"
        return "local"

    def stop(self) -> None:
        """Stop everything: gateway, pollers (joined), emulators (java ended), environment restored."""
        global _running
        if not self._started:
            return
        steps: list[tuple[str, Callable[[], None]]] = [
            ("gateway", self._stop_gateway),
            ("pollers", self._stop_pollers),
            ("Lambda routes", lambda: states.unroute_lambda_invocations(self._lambda_routes)),
            ("moto", self._stop_moto),
            ("DynamoDB Local", self._stop_dynamodb_local),
            ("layer runtimes", lambda: reset_layer_runtimes(self.template) and None),
            ("environment", self._restore_env),
        ]
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("stopping %s failed", what)
        with self._clients_lock:
            self._clients.clear()
        self._started = False
        with _running_lock:
            if _running is self:
                _running = None

    def _stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()

    def _stop_pollers(self) -> None:
        for poller in self.pollers:
            poller.stop()
        for poller in self.pollers:
            if poller.is_alive():
                poller.join(timeout=10)
                if poller.is_alive():
                    log.warning("poller %s did not stop within 10 s", poller.name)

    def _stop_moto(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def _stop_dynamodb_local(self) -> None:
        if self._dynamodb_local is not None:
            self._dynamodb_local.stop()
            self._dynamodb_local = None

    def _invoker(self, logical_id: str) -> Callable[[Any], Any]:
        """What moto's Lambda Invoke of this function runs: the handler, in its container pool."""

        def invoke(event: Any) -> Any:
            assert self.functions is not None
            return self.functions.invoke(logical_id, event)

        return invoke

    # --- environment

    def _set_env(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value

    def _unset_env(self, name: str) -> None:
        if name in os.environ:
            self._saved_env.setdefault(name, os.environ[name])
            del os.environ[name]

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def function_environment(self) -> dict[str, str]:
        """The union of the functions' resolved environments (one process, one os.environ)."""
        union: dict[str, str] = {}
        owner: dict[str, str] = {}
        for function in self.template.functions.values():
            for name, value in self.resolver.function_environment(function).items():
                if name in union and union[name] != value:
                    raise StackError(
                        f"{owner[name]} and {function.logical_id} set {name} differently ({union[name]!r} vs "
                        f"{value!r}): in-process functions share one os.environ, so the local stack cannot run "
                        "both. Give the variable one value, or another name."
                    )
                union[name] = value
                owner.setdefault(name, function.logical_id)
        return union

    # --- wiring

    def _destination(self, raw: Any) -> Destination | None:
        if raw is None:
            return None
        arn = str(self.resolver.resolve(raw))
        logical_id = self.resolver.logical_id_for_arn(arn)
        resource = self.template.resources.get(logical_id or "")
        if resource is not None and logical_id in self.resources.queues:
            return Destination("sqs", self.resources.queues[logical_id], self.client("sqs"), arn)
        if resource is not None and logical_id in self.resources.topics:
            return Destination("sns", self.resources.topics[logical_id], self.client("sns"), arn)
        if arn.startswith("arn:aws:sqs:"):
            url = self.client("sqs").get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
            return Destination("sqs", url, self.client("sqs"), arn)
        if arn.startswith("arn:aws:sns:"):
            return Destination("sns", arn, self.client("sns"), arn)
        log.warning("destination %s is neither a queue nor a topic of the stack: failures there are only logged", arn)
        return None

    def _make_pollers(self) -> list[Poller]:
        assert self.functions is not None
        pollers: list[Poller] = []
        for event in self.template.stream_events:
            if not event.enabled:
                continue
            stream_arn = str(self.resolver.resolve(event.stream))
            if not stream_arn.startswith("arn:") or "<unresolved" in stream_arn:
                log.warning(
                    "%s.%s: stream %s is not a table of this template: not polled",
                    event.function,
                    event.name,
                    stream_arn,
                )
                continue
            pollers.append(
                StreamPoller(
                    self.functions.pool(event.function),
                    event,
                    stream_arn,
                    self.client("dynamodbstreams"),
                    self._destination(event.on_failure),
                    REGION,
                    self.resolver.arn(event.function),
                    verify_reads=self.dynamodb_backend == "moto",
                )
            )
        for sqs_event in self.template.sqs_events:
            if sqs_event.enabled:
                sqs_poller = self._sqs_poller(sqs_event)
                if sqs_poller is not None:
                    pollers.append(sqs_poller)
        for event in self.template.rule_events:
            function = self.template.function(event.function)
            invoke_config = function.event_invoke_config
            retries = int(invoke_config.get("MaximumRetryAttempts", 2))
            on_failure = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            function_dlq = (function.properties.get("DeadLetterQueue") or {}).get("TargetArn")
            pollers.append(
                RulePoller(
                    self.functions.pool(event.function),
                    event,
                    str(self.resolver.resolve(event.event_bus) or "default"),
                    self.resolver.resolve(event.pattern),
                    self.client("events"),
                    self.client("sqs"),
                    on_failure=self._destination(on_failure),
                    dead_letter=self._destination(function_dlq or event.dead_letter_arn),
                    max_attempts=min(retries, 2) + 1,
                    function_arn=self.resolver.arn(event.function),
                    rule_input=self.resolver.resolve(event.input),
                )
            )
        self.tap = EventTap(self._tap_patterns(), self.client("events"), self.client("sqs"))
        pollers.append(self.tap)
        return pollers

    def _sqs_poller(self, event: SqsEvent) -> SqsPoller | None:
        assert self.functions is not None
        arn = str(self.resolver.resolve(event.queue))
        logical_id = event.queue_logical_id or self.resolver.logical_id_for_arn(arn)
        if logical_id in self.resources.queues:
            url = self.resources.queues[logical_id]
        elif arn.startswith("arn:aws:sqs:"):
            try:
                url = self.client("sqs").get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
            except ClientError:
                url = ""
        else:
            url = ""
        if not url:
            log.warning("%s.%s: queue %s is not a queue of this stack: not polled", event.function, event.name, arn)
            return None
        if event.filter_patterns:
            log.warning(
                "%s.%s: FilterCriteria is not applied locally: every message reaches the function",
                event.function,
                event.name,
            )
        cap = event.maximum_concurrency
        return SqsPoller(
            self.functions.pool(event.function),
            event,
            url,
            arn,
            self.client("sqs"),
            REGION,
            concurrency=min(cap, SQS_CONCURRENCY) if cap else SQS_CONCURRENCY,
        )

    def _tap_patterns(self) -> dict[str, dict[str, Any]]:
        """Which events the tap keeps, per bus: what the bus's archive keeps (the template's own words for "our
        domain events"), or every event on a bus without an archive."""
        patterns: dict[str, dict[str, Any]] = {}
        for bus in self.template.event_buses or []:
            name = self.resolver.physical_name(bus.logical_id)
            bus_arn = self.resolver.arn(bus.logical_id)
            archive_patterns = [
                self.resolver.resolve(archive.properties.get("EventPattern"))
                for archive in self.template.of_type("AWS::Events::Archive")
                if self.resolver.resolve(archive.properties.get("SourceArn")) == bus_arn
                and archive.properties.get("EventPattern")
            ]
            patterns[name] = archive_patterns[0] if len(archive_patterns) == 1 else {"source": [{"prefix": ""}]}
        return patterns or {"default": {"source": [{"prefix": ""}]}}

    def _gateway_responses(self, routes: list[Route]) -> GatewayResponses:
        """The GatewayResponses of the REST API the routes belong to (the template declares one API)."""
        apis = {route.event.rest_api for route in routes if route.event.rest_api}
        entries: dict[str, Any] = {}
        for api in sorted(apis):
            resource = self.template.resources.get(api)
            declared = (resource.properties.get("GatewayResponses") if resource else None) or {}
            entries.update(self.resolver.resolve(declared))
        return GatewayResponses(entries)

    def _cognito_groups(self) -> dict[str, str]:
        """The admin and service group names, from the template's user pool groups."""
        groups: dict[str, str] = {}
        for resource in self.template.of_type("AWS::Cognito::UserPoolGroup"):
            name = str(self.resolver.resolve(resource.properties.get("GroupName", resource.logical_id)))
            if "admin" in name.lower():
                groups.setdefault("admin", name)
            elif "service" in name.lower():
                groups.setdefault("service", name)
        return {"admin": groups.get("admin", ADMIN_GROUP), "service": groups.get("service", SERVICE_GROUP)}

    # --- using it

    @property
    def api_url(self) -> str:
        return self.gateway.url if self.gateway is not None else ""

    @property
    def swagger_url(self) -> str | None:
        """The Swagger UI route of the template (an open GET route ending in /docs), if it has one."""
        for event in self.template.api_events:
            if event.method == "GET" and event.path.rstrip("/").endswith("/docs") and not event.protected:
                return f"{self.api_url}{event.path}"
        return None

    def client(self, service: str) -> Any:
        """A boto3 client for `service`, pointed at the emulator that serves it (cached; clients are thread-safe)."""
        with self._clients_lock:
            if service not in self._clients:
                endpoint = self.dynamodb_endpoint if service in ("dynamodb", "dynamodbstreams") else self.moto_endpoint
                self._clients[service] = boto3.session.Session().client(  # type: ignore[call-overload]
                    service,
                    endpoint_url=endpoint,
                    region_name=REGION,
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",  # noqa: S106 - the emulators' fake credentials
                    aws_session_token="testing",  # noqa: S106
                    # Timeouts well above a 1 s long poll, well below botocore's 60 s: a request the emulator
                    # drops under load is retried soon instead of stalling a poller for a minute.
                    config=Config(
                        retries={"mode": "standard", "max_attempts": 5},
                        max_pool_connections=32,
                        connect_timeout=5,
                        read_timeout=15,
                    ),
                )
            return self._clients[service]

    def resource_name(self, logical_id: str) -> str:
        """The local physical name of a template resource (table, queue, bus, function...)."""
        if logical_id not in self.template.resources:
            raise KeyError(f"no resource {logical_id!r} in {self.template_path.name}")
        return self.resolver.physical_name(logical_id)

    def queue_url(self, logical_id: str) -> str:
        return self.resources.queues[logical_id]

    def invoke(self, function_logical_id: str, event: Any) -> Any:
        """Run a function's handler with `event` in its container pool (raises InvocationError if it raises)."""
        if self.functions is None:
            raise StackError("the stack is not running")
        return self.functions.invoke(function_logical_id, event)

    def events(self, detail_type: str | None = None, **detail: Any) -> list[dict[str, Any]]:
        """Domain events seen on the bus so far, oldest first (optionally of one detail-type / detail values)."""
        return self.tap.events(detail_type, **detail) if self.tap is not None else []

    def wait_for_events(
        self, detail_type: str | None, count: int = 1, timeout: float = 10.0, **detail: Any
    ) -> list[dict[str, Any]]:
        """Wait until `count` events of `detail_type` (with these detail values) have been seen; return them all.

        Raises TimeoutError, naming what was seen, if they do not arrive in time.
        """
        if self.tap is None:
            raise StackError("the stack is not running")
        found = self.tap.wait_for(detail_type, count, timeout, detail)
        if len(found) < count:
            seen: dict[str, int] = {}
            for event in self.tap.events():
                seen[str(event.get("detail-type"))] = seen.get(str(event.get("detail-type")), 0) + 1
            same_type = [e.get("detail") for e in self.tap.events(detail_type)][-3:]
            raise TimeoutError(
                f"{len(found)} of {count} {detail_type or 'events'} {detail or ''} within "
                f"{timeout} s; seen so far: {seen or 'nothing'}"
                + (f"; the last {detail_type} details: {same_type}" if same_type and detail else "")
                + "; pollers: "
                + "; ".join(_poller_summary(p) for p in self.pollers if not isinstance(p, EventTap))
            )
        return found

    def fire_schedule(self, function_logical_id: str, event_name: str) -> Any:
        """Run a `Schedule`/`ScheduleV2` event now, with the payload its schedule would send: a function's handler
        is invoked (its answer returned); a state machine's execution is started ({executionArn, startDate})."""
        target = function_logical_id
        schedules = {e.name: e for e in self.template.schedule_events if e.function == target}
        if not schedules and target not in self.state_machines:
            target = self.template.function(function_logical_id).logical_id
        if event_name not in schedules:
            raise KeyError(
                f"{function_logical_id} has no schedule event {event_name!r}; it has: "
                f"{', '.join(sorted(schedules)) or 'none'}"
            )
        schedule = schedules[event_name]
        raw_input = self.resolver.resolve(schedule.input)
        if raw_input is not None:
            payload = json.loads(raw_input) if isinstance(raw_input, str) else raw_input
        elif schedule.type == "ScheduleV2":
            payload = {}  # EventBridge Scheduler sends the target's Input, and none was given
        else:
            from datetime import UTC, datetime

            payload = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT_ID,
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION,
                "resources": [
                    f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{self.stack_name}-{function_logical_id}{event_name}"
                ],
                "detail": {},
            }
        if schedule.state_machine:
            # EventBridge names the execution itself (a fresh name each time) and passes the event as its input.
            started = self.client("stepfunctions").start_execution(
                stateMachineArn=self.state_machines[target], name=str(uuid.uuid4()), input=json.dumps(payload)
            )
            return {"executionArn": started["executionArn"], "startDate": started["startDate"].isoformat()}
        return self.invoke(target, payload)

    def status(self) -> dict[str, Any]:
        return {
            "stack_name": self.stack_name,
            "template": str(self.template_path),
            "api_url": self.api_url,
            "swagger_url": self.swagger_url,
            "dynamodb_backend": self.dynamodb_backend,
            "endpoints": {"moto": self.moto_endpoint, "dynamodb": self.dynamodb_endpoint},
            "resources": {
                "tables": self.resources.tables,
                "streams": self.resources.streams,
                "queues": self.resources.queues,
                "topics": self.resources.topics,
                "buses": self.resources.buses,
                "state_machines": self.state_machines,
            },
            "routes": [
                {
                    "method": r.method,
                    "path": r.path,
                    "function": r.function,
                    "event": r.name,
                    "auth": r.authorizer or "NONE",
                }
                for r in self.template.api_events
            ],
            "functions": self.functions.status() if self.functions else {},
            "pollers": [p.status() for p in self.pollers],
            "schedules": [
                {
                    "function": s.function,
                    "event": s.name,
                    "type": s.type,
                    "expression": self.resolver.resolve(s.expression),
                    "enabled": s.enabled,
                    "fire": f"POST {self.api_url}/_local/schedules/{s.function}/{s.name}",
                }
                for s in self.template.schedule_events
            ],
        }


def _poller_summary(poller: Poller) -> str:
    """A poller's counters and where its thread is now (a stuck poller shows where it is stuck)."""
    frame = sys._current_frames().get(poller.ident or -1)
    where = traceback.extract_stack(frame)[-1] if frame is not None else None
    status = {
        k: v
        for k, v in poller.status().items()
        if k in ("delivered", "failed_attempts", "dead_lettered", "last_error", "rewinds", "alive")
    }
    return f"{poller.name} {status} at {where.name}:{where.lineno}" if where else f"{poller.name} {status}"
