"""Create the template's tables, queues, topics and buses in the emulators. Idempotent: a second call is fine.

Only what the emulators need to behave like AWS is passed on: keys, indexes, streams, billing, TTL, queue
attributes. Encryption, point-in-time recovery, tags and deletion policies have no local meaning and are skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from devstack.template import Resolver, Resource

log = logging.getLogger("devstack.resources")

ClientFactory = Callable[[str], Any]

_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "RedrivePolicy",
    "RedriveAllowPolicy",
)


@dataclass
class CreatedResources:
    """What exists in the emulators after `create_resources`, by logical id."""

    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    streams: dict[str, str] = field(default_factory=dict)  # table logical id -> stream ARN
    queues: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL
    topics: dict[str, str] = field(default_factory=dict)  # logical id -> topic ARN
    buses: dict[str, str] = field(default_factory=dict)  # logical id -> bus name


def _table_request(resource: Resource, resolver: Resolver) -> dict[str, Any]:
    props = resolver.resolve(resource.properties)
    billing = props.get("BillingMode", "PROVISIONED")  # CloudFormation's default, as on AWS
    request: dict[str, Any] = {
        "TableName": resolver.physical_name(resource.logical_id),
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(props.get("ProvisionedThroughput"))

    def index(spec: dict[str, Any], global_index: bool) -> dict[str, Any]:
        out = {k: spec[k] for k in ("IndexName", "KeySchema", "Projection") if k in spec}
        if global_index and billing == "PROVISIONED":
            out["ProvisionedThroughput"] = _throughput(spec.get("ProvisionedThroughput"))
        return out

    if props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [index(s, True) for s in props["GlobalSecondaryIndexes"]]
    if props.get("LocalSecondaryIndexes"):
        request["LocalSecondaryIndexes"] = [index(s, False) for s in props["LocalSecondaryIndexes"]]
    stream = props.get("StreamSpecification") or {}
    if stream.get("StreamViewType"):
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return request


def _throughput(spec: dict[str, Any] | None) -> dict[str, int]:
    spec = spec or {}
    return {
        "ReadCapacityUnits": int(spec.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(spec.get("WriteCapacityUnits", 5)),
    }


def create_table(dynamodb: Any, resource: Resource, resolver: Resolver) -> dict[str, Any]:
    """Create one table (or find it made already); enable TTL when the template asks. Returns the description."""
    request = _table_request(resource, resolver)
    name = request["TableName"]
    try:
        dynamodb.create_table(**request)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
    deadline = time.monotonic() + 30
    while True:
        table = dynamodb.describe_table(TableName=name)["Table"]
        if table["TableStatus"] == "ACTIVE" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    ttl = resolver.resolve(resource.properties.get("TimeToLiveSpecification")) or {}
    if ttl.get("Enabled") in (True, "true") and ttl.get("AttributeName"):
        current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
    return dict(table)


def create_queue(sqs: Any, resource: Resource, resolver: Resolver) -> str:
    props = resolver.resolve(resource.properties)
    attributes: dict[str, str] = {}
    for name in _QUEUE_ATTRIBUTES:
        if props.get(name) is None:
            continue
        value = props[name]
        if isinstance(value, dict):  # RedrivePolicy: CloudFormation takes an object, SQS a JSON string
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = str(value).lower()
        attributes[name] = str(value)
    if attributes.get("FifoQueue") != "true":
        attributes.pop("FifoQueue", None)
    name = resolver.physical_name(resource.logical_id)
    try:
        return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
        sqs.set_attributes(QueueUrl=url, Attributes={k: v for k, v in attributes.items() if k != "FifoQueue"})
        return url


def create_resources(resolver: Resolver, client: ClientFactory) -> CreatedResources:
    """Create every table, queue, topic and bus of the template; record what only exists once made (stream ARNs,
    queue URLs) in the resolver, so intrinsics resolved afterwards see the real values."""
    template = resolver.template
    created = CreatedResources()
    if template.tables:
        dynamodb = client("dynamodb")
        for resource in template.tables:
            table = create_table(dynamodb, resource, resolver)
            created.tables[resource.logical_id] = table["TableName"]
            resolver.set_attribute(resource.logical_id, "Arn", table["TableArn"])
            if table.get("LatestStreamArn"):
                created.streams[resource.logical_id] = table["LatestStreamArn"]
                resolver.set_attribute(resource.logical_id, "StreamArn", table["LatestStreamArn"])
            log.debug("table %s ready", table["TableName"])
    if template.queues:
        sqs = client("sqs")
        # Dead-letter targets first: a RedrivePolicy names a queue that must exist.
        ordered = sorted(template.queues, key=lambda r: "RedrivePolicy" in r.properties)
        for resource in ordered:
            url = create_queue(sqs, resource, resolver)
            created.queues[resource.logical_id] = url
            resolver.set_attribute(resource.logical_id, "QueueUrl", url)
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            resolver.set_attribute(resource.logical_id, "Arn", arn)
    if template.topics:
        sns = client("sns")
        for resource in template.topics:
            props = resolver.resolve(resource.properties)
            attributes = {
                k: str(props[k]).lower() if isinstance(props[k], bool) else str(props[k])
                for k in ("FifoTopic", "ContentBasedDeduplication", "DisplayName")
                if k in props
            }
            arn = sns.create_topic(Name=resolver.physical_name(resource.logical_id), Attributes=attributes)["TopicArn"]
            created.topics[resource.logical_id] = arn
            resolver.set_attribute(resource.logical_id, "Arn", arn)
    if template.event_buses:
        events = client("events")
        for resource in template.event_buses:
            name = resolver.physical_name(resource.logical_id)
            try:
                arn = events.create_event_bus(Name=name)["EventBusArn"]
            except ClientError as error:
                if error.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                    raise
                arn = events.describe_event_bus(Name=name)["Arn"]
            created.buses[resource.logical_id] = name
            resolver.set_attribute(resource.logical_id, "Arn", arn)
    return created
