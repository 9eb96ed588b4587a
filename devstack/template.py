"""template.yaml as a typed model, and a resolver that turns its intrinsics into local values.

The template is the one source of wiring: the local stack reads every route, rule, stream, table, queue and bus from
here. The model keeps property values raw (intrinsics included); `Resolver` gives them their local meaning, because
some of it (a stream ARN, a queue URL) exists only once the emulators have made the resource.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_STACK_NAME = "loyalty-local"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PARTITION = "aws"

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
API_TYPES = ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi")
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


# --- YAML with CloudFormation short tags -------------------------------------------------------------------------

_SHORT_TAGS = (
    "Ref",
    "GetAtt",
    "Sub",
    "Join",
    "If",
    "Select",
    "Split",
    "GetAZs",
    "ImportValue",
    "Equals",
    "Not",
    "And",
    "Or",
    "Condition",
    "FindInMap",
    "Base64",
    "Cidr",
    "Transform",
    "Length",
    "ToJsonString",
)


class CloudFormationLoader(yaml.SafeLoader):
    """A SafeLoader that reads `!Ref X` as {"Ref": "X"}, `!GetAtt A.B` as {"Fn::GetAtt": ["A", "B"]}, and so on."""


def _construct_short_tag(loader: CloudFormationLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        value = [logical_id, attribute]
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_short_tag)

# CloudFormation reads "on", "yes" and dates as strings, not as YAML 1.1 booleans and timestamps.
CloudFormationLoader.yaml_implicit_resolvers = {
    key: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
CloudFormationLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass


# --- The model ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiEvent:
    """An `Api` event: one method on one path of a REST API."""

    function: str
    name: str
    path: str
    method: str  # upper case; ANY matches every method
    rest_api: str | None  # logical id of the AWS::Serverless::Api, None for the implicit API
    authorizer: str | None  # None: open route (Auth.Authorizer NONE, or no authorizer at all)

    @property
    def protected(self) -> bool:
        return self.authorizer is not None


@dataclass(frozen=True)
class EventBridgeRuleEvent:
    function: str
    name: str
    event_bus: Any  # raw: usually !Ref of a bus; None for the default bus
    pattern: dict[str, Any]
    dead_letter_arn: Any  # raw DeadLetterConfig.Arn, or None
    retry_policy: dict[str, Any]
    input: Any = None


@dataclass(frozen=True)
class StreamEvent:
    """A `DynamoDB` (or `Kinesis`-shaped) stream event source mapping."""

    function: str
    name: str
    stream: Any  # raw, usually !GetAtt Table.StreamArn
    table: str | None  # logical id of the table the stream belongs to, when it can be told
    starting_position: str
    batch_size: int
    filter_patterns: tuple[dict[str, Any], ...]
    maximum_retry_attempts: int  # -1: until the record expires (AWS default)
    bisect_on_error: bool
    report_batch_item_failures: bool
    on_failure: Any  # raw DestinationConfig.OnFailure.Destination, or None
    enabled: bool = True


@dataclass(frozen=True)
class SqsEvent:
    """An `SQS` event source mapping: Lambda polls the queue and passes its messages to the function in batches."""

    function: str
    name: str
    queue: Any  # raw, usually !GetAtt Queue.Arn
    queue_logical_id: str | None  # the queue of this template it names, when it is a GetAtt of one
    batch_size: int  # 10 unless given, as on AWS
    maximum_batching_window: int  # seconds (MaximumBatchingWindowInSeconds, 0 unless given)
    report_batch_item_failures: bool
    maximum_concurrency: int | None  # ScalingConfig.MaximumConcurrency; None: no cap of its own
    filter_patterns: tuple[dict[str, Any], ...] = ()  # read so the local stack can say it does not apply them
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleEvent:
    function: str  # the logical id of what the schedule starts: a function, or a state machine
    name: str
    type: str  # Schedule (EventBridge rule) or ScheduleV2 (EventBridge Scheduler)
    expression: Any
    input: Any  # raw JSON string or None
    enabled: bool = True
    state_machine: bool = False  # the target is a state machine: the schedule starts an execution


@dataclass(frozen=True)
class OtherEvent:
    function: str
    name: str
    type: str
    properties: dict[str, Any]


FunctionEvent = ApiEvent | EventBridgeRuleEvent | StreamEvent | SqsEvent | ScheduleEvent | OtherEvent


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_uri: Path
    handler: str  # "module.func" (module may be dotted: "pkg.app.handler")
    runtime: str | None
    memory_size: int
    timeout: int
    environment: dict[str, Any]  # raw values, Globals merged in (function wins)
    layers: tuple[Any, ...]
    events: tuple[FunctionEvent, ...]
    properties: dict[str, Any]  # everything, Globals merged in

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def handler_function(self) -> str:
        return self.handler.rpartition(".")[2]

    @property
    def handler_file(self) -> Path:
        return self.code_uri.joinpath(*self.handler_module.split(".")).with_suffix(".py")

    @property
    def event_invoke_config(self) -> dict[str, Any]:
        return dict(self.properties.get("EventInvokeConfig") or {})


@dataclass(frozen=True)
class Layer:
    logical_id: str
    content_uri: Path


@dataclass(frozen=True)
class Template:
    path: Path
    root: Path
    raw: dict[str, Any]
    parameters: dict[str, Any]  # name -> default (None when the parameter has none)
    resources: dict[str, Resource]
    functions: dict[str, Function]
    layers: dict[str, Layer]

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type in types]

    @property
    def tables(self) -> list[Resource]:
        return self.of_type("AWS::DynamoDB::Table")

    @property
    def queues(self) -> list[Resource]:
        return self.of_type("AWS::SQS::Queue")

    @property
    def topics(self) -> list[Resource]:
        return self.of_type("AWS::SNS::Topic")

    @property
    def event_buses(self) -> list[Resource]:
        return self.of_type("AWS::Events::EventBus")

    @property
    def apis(self) -> list[Resource]:
        return self.of_type(*API_TYPES)

    @property
    def state_machines(self) -> list[Resource]:
        return self.of_type(*STATE_MACHINE_TYPES)

    def _events(self, kind: type) -> list[Any]:
        return [e for f in self.functions.values() for e in f.events if isinstance(e, kind)]

    @property
    def api_events(self) -> list[ApiEvent]:
        return self._events(ApiEvent)

    @property
    def rule_events(self) -> list[EventBridgeRuleEvent]:
        return self._events(EventBridgeRuleEvent)

    @property
    def stream_events(self) -> list[StreamEvent]:
        return self._events(StreamEvent)

    @property
    def sqs_events(self) -> list[SqsEvent]:
        return self._events(SqsEvent)

    @property
    def schedule_events(self) -> list[ScheduleEvent]:
        """The schedules of functions, then those of state machines (SAM gives both a `Schedule` event)."""
        machines = [
            ScheduleEvent(
                function=resource.logical_id,
                name=name,
                type=str(spec.get("Type")),
                expression=(spec.get("Properties") or {}).get(
                    "Schedule", (spec.get("Properties") or {}).get("ScheduleExpression")
                ),
                input=(spec.get("Properties") or {}).get("Input"),
                enabled=(spec.get("Properties") or {}).get("Enabled", True) is not False
                and (spec.get("Properties") or {}).get("State", "ENABLED") != "DISABLED",
                state_machine=True,
            )
            for resource in self.state_machines
            for name, spec in (resource.properties.get("Events") or {}).items()
            if (spec or {}).get("Type") in ("Schedule", "ScheduleV2")
        ]
        return self._events(ScheduleEvent) + machines

    def function(self, logical_id: str) -> Function:
        try:
            return self.functions[logical_id]
        except KeyError:
            raise KeyError(
                f"no function {logical_id!r} in {self.path.name}; there are: {', '.join(sorted(self.functions))}"
            ) from None


def _merge_globals(global_props: Mapping[str, Any], local_props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: maps merge (the resource wins), lists add up (globals first), scalars are replaced."""
    merged: dict[str, Any] = copy.deepcopy(dict(global_props))
    for key, value in local_props.items():
        if key in merged and isinstance(merged[key], dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = _merge_globals(merged[key], value)
        elif key in merged and isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = merged[key] + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_intrinsic(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in ("Ref", "Condition", *(f"Fn::{t}" for t in _SHORT_TAGS))
    )


def _ref_target(value: Any) -> str | None:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    return None


def _getatt_target(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else str(target).partition(".")[0])
    return None


def _filter_patterns(props: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """An event source mapping's FilterCriteria patterns (each a JSON string, or a map in YAML)."""
    filters = (props.get("FilterCriteria") or {}).get("Filters") or []
    return tuple(
        json.loads(f["Pattern"]) if isinstance(f.get("Pattern"), str) else dict(f["Pattern"])
        for f in filters
        if f.get("Pattern") is not None
    )


def _parse_event(
    function_id: str, name: str, event: Mapping[str, Any], apis: Mapping[str, Resource], globals_api: Mapping[str, Any]
) -> FunctionEvent:
    kind = str(event.get("Type", ""))
    props = dict(event.get("Properties") or {})
    if kind == "Api":
        rest_api = _ref_target(props.get("RestApiId"))
        api_props = dict(apis[rest_api].properties) if rest_api in apis else {}
        api_auth = dict(_merge_globals(globals_api, api_props).get("Auth") or {})
        event_auth = dict(props.get("Auth") or {})
        authorizer = event_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
        if authorizer in ("NONE", "AWS_IAM"):
            # AWS_IAM would need SigV4 checking: treated as open locally (docs/local-stack.md).
            authorizer = None
        return ApiEvent(
            function=function_id,
            name=name,
            path=str(props.get("Path", "/")),
            method=str(props.get("Method", "any")).upper(),
            rest_api=rest_api,
            authorizer=str(authorizer) if authorizer else None,
        )
    if kind in ("EventBridgeRule", "CloudWatchEvent"):
        return EventBridgeRuleEvent(
            function=function_id,
            name=name,
            event_bus=props.get("EventBusName"),
            pattern=dict(props.get("Pattern") or {}),
            dead_letter_arn=(props.get("DeadLetterConfig") or {}).get("Arn"),
            retry_policy=dict(props.get("RetryPolicy") or {}),
            input=props.get("Input"),
        )
    if kind in ("DynamoDB", "Kinesis"):
        stream = props.get("Stream")
        on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        return StreamEvent(
            function=function_id,
            name=name,
            stream=stream,
            table=_getatt_target(stream),
            starting_position=str(props.get("StartingPosition", "TRIM_HORIZON")),
            batch_size=int(props.get("BatchSize", 100)),
            filter_patterns=_filter_patterns(props),
            maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
            bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
            report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            on_failure=on_failure,
            enabled=props.get("Enabled", True) is not False,
        )
    if kind == "SQS":
        queue = props.get("Queue")
        maximum_concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
        return SqsEvent(
            function=function_id,
            name=name,
            queue=queue,
            queue_logical_id=_getatt_target(queue),
            batch_size=int(props.get("BatchSize", 10)),
            maximum_batching_window=int(props.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            maximum_concurrency=int(maximum_concurrency) if maximum_concurrency is not None else None,
            filter_patterns=_filter_patterns(props),
            enabled=props.get("Enabled", True) is not False,
        )
    if kind in ("Schedule", "ScheduleV2"):
        enabled = props.get("Enabled", True) is not False and props.get("State", "ENABLED") != "DISABLED"
        return ScheduleEvent(
            function=function_id,
            name=name,
            type=kind,
            expression=props.get("Schedule", props.get("ScheduleExpression")),
            input=props.get("Input"),
            enabled=enabled,
        )
    return OtherEvent(function=function_id, name=name, type=kind, properties=props)


def load_template(path: str | Path) -> Template:
    """Read a SAM/CloudFormation template into the model. Paths (CodeUri, ContentUri) are relative to its folder."""
    path = Path(path).resolve()
    raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    root = path.parent
    parameters = {name: (spec or {}).get("Default") for name, spec in (raw.get("Parameters") or {}).items()}
    globals_section = raw.get("Globals") or {}
    globals_function = dict(globals_section.get("Function") or {})
    globals_api = dict(globals_section.get("Api") or {})
    resources = {
        logical_id: Resource(
            logical_id=logical_id,
            type=str(spec.get("Type", "")),
            properties=dict(spec.get("Properties") or {}),
            metadata=dict(spec.get("Metadata") or {}),
        )
        for logical_id, spec in (raw.get("Resources") or {}).items()
    }
    apis = {r.logical_id: r for r in resources.values() if r.type in API_TYPES}
    functions: dict[str, Function] = {}
    for resource in resources.values():
        if resource.type not in FUNCTION_TYPES:
            continue
        props = (
            _merge_globals(globals_function, resource.properties)
            if resource.type == "AWS::Serverless::Function"
            else dict(resource.properties)
        )
        code_uri = props.get("CodeUri", ".")
        if not isinstance(code_uri, str):  # an S3 location: nothing to run locally
            code_uri = "."
        events = tuple(
            _parse_event(resource.logical_id, name, spec or {}, apis, globals_api)
            for name, spec in (props.get("Events") or {}).items()
        )
        functions[resource.logical_id] = Function(
            logical_id=resource.logical_id,
            code_uri=(root / code_uri).resolve(),
            handler=str(props.get("Handler", "app.lambda_handler")),
            runtime=props.get("Runtime"),
            memory_size=int(props.get("MemorySize", 128)),
            timeout=int(props.get("Timeout", 3)),
            environment=dict((props.get("Environment") or {}).get("Variables") or {}),
            layers=tuple(props.get("Layers") or ()),
            events=events,
            properties=props,
        )
    layers = {
        r.logical_id: Layer(r.logical_id, (root / str(r.properties.get("ContentUri", "."))).resolve())
        for r in resources.values()
        if r.type in LAYER_TYPES and isinstance(r.properties.get("ContentUri", "."), str)
    }
    return Template(
        path=path, root=root, raw=raw, parameters=parameters, resources=resources, functions=functions, layers=layers
    )


# --- Intrinsics, resolved for the local stack ---------------------------------------------------------------------

_NO_VALUE = object()
_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Cognito::UserPool": "UserPoolName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Serverless::SimpleTable": "TableName",
}
_ARN_SERVICE = {
    "AWS::DynamoDB::Table": ("dynamodb", "table/{}"),
    "AWS::Serverless::SimpleTable": ("dynamodb", "table/{}"),
    "AWS::SQS::Queue": ("sqs", "{}"),
    "AWS::SNS::Topic": ("sns", "{}"),
    "AWS::Events::EventBus": ("events", "event-bus/{}"),
    "AWS::Events::Rule": ("events", "rule/{}"),
    "AWS::Serverless::Function": ("lambda", "function:{}"),
    "AWS::Lambda::Function": ("lambda", "function:{}"),
    "AWS::Cognito::UserPool": ("cognito-idp", "userpool/{}"),
    "AWS::Serverless::StateMachine": ("states", "stateMachine:{}"),
    "AWS::StepFunctions::StateMachine": ("states", "stateMachine:{}"),
    "AWS::Serverless::LayerVersion": ("lambda", "layer:{}:1"),
    "AWS::Lambda::LayerVersion": ("lambda", "layer:{}:1"),
}


def placeholder(what: str) -> str:
    """What an intrinsic that has no local meaning resolves to: visible, never a crash."""
    return f"<unresolved {what}>"


class Resolver:
    """Local values for a template's intrinsics.

    `attributes` holds what only exists once the emulators have made a resource ({"LoyaltyTable": {"StreamArn":
    ...}, "SomeQueue": {"QueueUrl": ...}}); `queue_endpoint` builds queue URLs before that.
    """

    def __init__(
        self,
        template: Template,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
        parameters: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Mapping[str, str]] | None = None,
        queue_endpoint: str | None = None,
    ):
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.parameters = {**template.parameters, **(parameters or {})}
        self.attributes: dict[str, dict[str, str]] = {k: dict(v) for k, v in (attributes or {}).items()}
        self.queue_endpoint = (queue_endpoint or f"https://sqs.{region}.amazonaws.com").rstrip("/")
        self._conditions: dict[str, bool] = {}

    # names and ARNs

    def set_attribute(self, logical_id: str, name: str, value: str) -> None:
        self.attributes.setdefault(logical_id, {})[name] = value

    def physical_name(self, logical_id: str) -> str:
        resource = self.template.resources.get(logical_id)
        if resource is None:
            return placeholder(f"resource {logical_id}")
        name_property = _NAME_PROPERTY.get(resource.type)
        if name_property and resource.properties.get(name_property) is not None:
            return str(self.resolve(resource.properties[name_property]))
        name = f"{self.stack_name}-{logical_id}"
        if resource.type == "AWS::SQS::Queue" and self.resolve(resource.properties.get("FifoQueue")) in (True, "true"):
            name += ".fifo"
        return name

    def arn(self, logical_id: str) -> str:
        resource = self.template.resources.get(logical_id)
        if resource is None:
            return placeholder(f"Arn of {logical_id}")
        if "Arn" in self.attributes.get(logical_id, {}):
            return self.attributes[logical_id]["Arn"]
        service, resource_format = _ARN_SERVICE.get(resource.type, ("", ""))
        if not service:
            return f"arn:{PARTITION}:{placeholder(resource.type)}:{self.region}:{self.account_id}:{logical_id}"
        name = (
            self.user_pool_id(logical_id)
            if resource.type == "AWS::Cognito::UserPool"
            else self.physical_name(logical_id)
        )
        return f"arn:{PARTITION}:{service}:{self.region}:{self.account_id}:{resource_format.format(name)}"

    def queue_url(self, logical_id: str) -> str:
        known = self.attributes.get(logical_id, {}).get("QueueUrl")
        return known or f"{self.queue_endpoint}/{self.account_id}/{self.physical_name(logical_id)}"

    def user_pool_id(self, logical_id: str) -> str:
        return f"{self.region}_local{re.sub(r'[^A-Za-z0-9]', '', logical_id)}"[:55]

    def logical_id_for_arn(self, arn: str) -> str | None:
        """Which resource of the template an ARN names (a destination, a dead-letter queue)."""
        for logical_id in self.template.resources:
            if self.arn(logical_id) == arn:
                return logical_id
        return None

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:{PARTITION}:cloudformation:{self.region}:{self.account_id}:stack/"
            f"{self.stack_name}/00000000-0000-0000-0000-000000000000",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            return placeholder(f"parameter {name} (no default)") if value is None else value
        resource = self.template.resources.get(name)
        if resource is None:
            return placeholder(f"Ref {name}")
        if resource.type == "AWS::SQS::Queue":
            return self.queue_url(name)
        if resource.type in (
            "AWS::SNS::Topic",
            "AWS::Serverless::LayerVersion",
            "AWS::Lambda::LayerVersion",
            *STATE_MACHINE_TYPES,
        ):
            return self.arn(name)
        if resource.type == "AWS::Cognito::UserPool":
            return self.user_pool_id(name)
        if resource.type in API_TYPES:
            return f"local{name.lower()}"[:10]
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        known = self.attributes.get(logical_id, {})
        if attribute in known:
            return known[attribute]
        resource = self.template.resources.get(logical_id)
        if resource is None:
            return placeholder(f"GetAtt {logical_id}.{attribute}")
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "StreamArn":
            return f"{self.arn(logical_id)}/stream/{placeholder('stream label')}"
        if attribute == "QueueUrl":
            return self.queue_url(logical_id)
        if attribute in ("QueueName", "TopicName", "Name"):
            return self.physical_name(logical_id)
        if attribute == "TopicArn":
            return self.arn(logical_id)
        if attribute == "ProviderURL" and resource.type == "AWS::Cognito::UserPool":
            return f"cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id(logical_id)}"
        return placeholder(f"GetAtt {logical_id}.{attribute}")

    # conditions

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.template.raw.get("Conditions") or {}).get(name)
            self._conditions[name] = bool(self.resolve(spec)) if spec is not None else False
        return self._conditions[name]

    # the walk

    def resolve(self, value: Any) -> Any:
        """Replace every intrinsic in `value` by its local value. Never raises on an unknown thing."""
        result = self._resolve(value)
        return None if result is _NO_VALUE else result

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self._resolve(v) for v in value) if r is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = getattr(self, "_fn_" + key.replace("Fn::", "").replace("::", "_"), None)
            if key in ("Ref", "Condition") or (key.startswith("Fn::") and handler is not None):
                try:
                    return (
                        self._ref(arg)
                        if key == "Ref"
                        else (self.condition(str(arg)) if key == "Condition" else handler(arg))
                    )  # type: ignore[misc]
                except Exception as error:  # a malformed intrinsic: say so, do not crash
                    return placeholder(f"{key} {json.dumps(arg, default=str)[:80]} ({error})")
            if key.startswith("Fn::"):
                return placeholder(f"{key} {json.dumps(arg, default=str)[:80]}")
        return {k: r for k, r in ((k, self._resolve(v)) for k, v in value.items()) if r is not _NO_VALUE}

    def _ref(self, arg: Any) -> Any:
        return self.ref(str(self._resolve(arg)))

    def _fn_GetAtt(self, arg: Any) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        logical_id, attribute = (str(self._resolve(a)) for a in arg)
        return self.get_att(logical_id, attribute)

    def _fn_Sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = str(arg[0]), {k: self._resolve(v) for k, v in (arg[1] if len(arg) > 1 else {}).items()}
        else:
            text, variables = str(arg), {}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.template.resources:
                return str(self.get_att(*name.split(".", 1)))
            value = self.ref(name)
            return placeholder(f"${{{name}}}") if value is _NO_VALUE else str(value)

        return re.sub(r"\$\{([^}]+)\}", substitute, text)

    def _fn_Join(self, arg: Any) -> str:
        delimiter, items = arg
        values = self._resolve(items)
        return str(delimiter).join(str(v) for v in (values if isinstance(values, list) else [values]))

    def _fn_Select(self, arg: Any) -> Any:
        index, items = self._resolve(arg[0]), self._resolve(arg[1])
        return items[int(index)]

    def _fn_Split(self, arg: Any) -> list[str]:
        return str(self._resolve(arg[1])).split(str(arg[0]))

    def _fn_If(self, arg: Any) -> Any:
        name, if_true, if_false = arg
        return self._resolve(if_true if self.condition(str(name)) else if_false)

    def _fn_Equals(self, arg: Any) -> bool:
        left, right = (self._resolve(a) for a in arg)
        return str(left) == str(right)

    def _fn_Not(self, arg: Any) -> bool:
        return not self._resolve(arg[0] if isinstance(arg, list) else arg)

    def _fn_And(self, arg: Any) -> bool:
        return all(self._resolve(a) for a in arg)

    def _fn_Or(self, arg: Any) -> bool:
        return any(self._resolve(a) for a in arg)

    def _fn_FindInMap(self, arg: Any) -> Any:
        map_name, top, second = (self._resolve(a) for a in arg[:3])
        mappings = self.template.raw.get("Mappings") or {}
        try:
            return self._resolve(mappings[map_name][top][second])
        except (KeyError, TypeError):
            if len(arg) > 3 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return self._resolve(arg[3]["DefaultValue"])
            return placeholder(f"FindInMap {map_name}/{top}/{second}")

    def _fn_Base64(self, arg: Any) -> str:
        return base64.b64encode(str(self._resolve(arg)).encode()).decode()

    def _fn_GetAZs(self, arg: Any) -> list[str]:
        region = self._resolve(arg) or self.region
        return [f"{region}{zone}" for zone in "abc"]

    def _fn_ImportValue(self, arg: Any) -> str:
        return placeholder(f"ImportValue {self._resolve(arg)}")

    def _fn_Cidr(self, arg: Any) -> list[str]:
        block, count, bits = (self._resolve(a) for a in arg)
        network = ipaddress.ip_network(str(block), strict=False)
        prefix = network.max_prefixlen - int(bits)
        return [str(subnet) for _, subnet in zip(range(int(count)), network.subnets(new_prefix=prefix), strict=False)]

    def _fn_ToJsonString(self, arg: Any) -> str:
        return json.dumps(self._resolve(arg), separators=(",", ":"))

    def _fn_Length(self, arg: Any) -> int:
        return len(self._resolve(arg))

    # what functions see

    def function_environment(self, function: Function) -> dict[str, str]:
        """A function's environment variables, resolved to strings as Lambda gives them."""
        env: dict[str, str] = {}
        for name, value in function.environment.items():
            resolved = self.resolve(value)
            if resolved is None:
                continue
            env[str(name)] = (
                json.dumps(resolved)
                if isinstance(resolved, dict | list)
                else str(resolved).lower()
                if isinstance(resolved, bool)
                else str(resolved)
            )
        return env

    def stage(self, rest_api: str | None) -> str:
        """The stage an API is deployed to (SAM's implicit API deploys to Prod)."""
        resource = self.template.resources.get(rest_api or "")
        if resource is not None and resource.properties.get("StageName") is not None:
            return str(self.resolve(resource.properties["StageName"]))
        return "Prod"
