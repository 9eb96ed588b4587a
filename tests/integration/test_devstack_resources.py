"""The real template.yaml, created in the emulators: every table, queue and bus the code uses exists there, as
declared. On moto and on DynamoDB Local (tables), twice over (idempotent)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.resources import create_resources
from devstack.template import Resolver, load_template
from tests.conftest import MotoServer

ROOT = Path(__file__).resolve().parents[2]


def _clients(moto: MotoServer, dynamodb_endpoint: str) -> Any:
    def client(service: str) -> Any:
        endpoint = dynamodb_endpoint if service in ("dynamodb", "dynamodbstreams") else moto.endpoint
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")

    return client


@pytest.fixture(params=["moto", pytest.param("dynamodb-local", marks=pytest.mark.dynamodb_local)])
def dynamodb_endpoint(request: pytest.FixtureRequest, moto_server: MotoServer) -> str:
    if request.param == "moto":
        return moto_server.endpoint
    return str(request.getfixturevalue("dynamodb_local").endpoint)


def test_the_template_creates_its_table_bus_and_dead_letter_queues(
    moto_server: MotoServer, dynamodb_endpoint: str
) -> None:
    # Given the real template under a stack name of its own
    template = load_template(ROOT / "template.yaml")
    resolver = Resolver(template, stack_name=f"res-{uuid.uuid4().hex[:6]}", queue_endpoint=moto_server.endpoint)
    client = _clients(moto_server, dynamodb_endpoint)

    # When its resources are created, twice
    create_resources(resolver, client)
    created = create_resources(Resolver(template, stack_name=resolver.stack_name), client)

    # Then the table has the template's keys, its stream and its TTL
    table_name = resolver.physical_name("LoyaltyTable")
    table = client("dynamodb").describe_table(TableName=table_name)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"PK": "HASH", "SK": "RANGE"}
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert created.streams["LoyaltyTable"] == table["LatestStreamArn"]
    ttl = client("dynamodb").describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING") and ttl["AttributeName"] == "expires_at"
    # And every index the template declares
    declared = template.resources["LoyaltyTable"].properties.get("GlobalSecondaryIndexes") or []
    assert {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])} == {i["IndexName"] for i in declared}
    # And the bus and both dead-letter queues exist under their local names
    bus = resolver.physical_name("LoyaltyBus")
    assert client("events").describe_event_bus(Name=bus)["Name"] == bus
    for queue in ("EventPublisherDeadLetterQueue", "OrderEventsDeadLetterQueue"):
        url = client("sqs").get_queue_url(QueueName=resolver.physical_name(queue))["QueueUrl"]
        assert created.queues[queue] == url
        attributes = client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["MessageRetentionPeriod"] == "1209600"
    # And the code's environment names exactly those resources
    env = resolver.function_environment(template.function("MembersApiFunction"))
    assert (env["TABLE_NAME"], env["EVENT_BUS_NAME"]) == (table_name, bus)
