"""The real template.yaml, read by the local stack: every route, rule, stream, table, queue and bus comes from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.template import ApiEvent, Resolver, Template, load_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def test_every_api_event_becomes_a_route_with_its_authorizer(template: Template) -> None:
    # Given the real template
    # When its Api events are read
    routes = {(e.method, e.path): e for e in template.api_events}

    # Then each has its function, and only the routes marked Authorizer NONE are open
    assert ("POST", "/v1/members") in routes
    assert ("GET", "/v1/members/{member_id}") in routes
    assert all(isinstance(e, ApiEvent) and e.function in template.functions for e in routes.values())
    open_routes = {path for (method, path), e in routes.items() if not e.protected and method != "OPTIONS"}
    assert open_routes == {"/v1/openapi.json", "/v1/docs"}
    assert all(not e.protected for (method, _), e in routes.items() if method == "OPTIONS")  # CORS preflights
    assert routes[("GET", "/v1/members/{member_id}")].authorizer == "MemberPoolAuthorizer"


def test_the_commerce_rule_is_read_with_its_bus_pattern_and_dead_letter_queue(template: Template) -> None:
    rule = next(e for e in template.rule_events if e.function == "OrderEventsFunction")
    resolver = Resolver(template)

    assert rule.pattern == {"source": ["commerce"], "detail-type": ["OrderPlaced", "OrderRefunded"]}
    assert resolver.resolve(rule.event_bus) == "loyalty-local-loyalty"
    assert resolver.resolve(rule.dead_letter_arn) == (
        "arn:aws:sqs:us-east-1:123456789012:loyalty-local-OrderEventsDeadLetterQueue"
    )


def test_the_table_stream_mapping_keeps_its_filter_batch_and_failure_destination(template: Template) -> None:
    stream = next(e for e in template.stream_events if e.function == "EventPublisherFunction")

    assert stream.table == "LoyaltyTable"
    assert stream.filter_patterns == (
        {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"event_type": {"S": [{"exists": True}]}}}},
    )
    assert stream.batch_size == 100
    assert stream.report_batch_item_failures and stream.bisect_on_error
    assert stream.starting_position == "TRIM_HORIZON"
    assert Resolver(template).resolve(stream.on_failure).endswith(":loyalty-local-EventPublisherDeadLetterQueue")


def test_the_table_has_pk_and_sk_a_stream_and_ttl(template: Template) -> None:
    (table,) = template.tables
    props = table.properties

    assert {k["AttributeName"]: k["KeyType"] for k in props["KeySchema"]} == {"PK": "HASH", "SK": "RANGE"}
    assert props["StreamSpecification"]["StreamViewType"] == "NEW_IMAGE"
    assert props["TimeToLiveSpecification"]["Enabled"] is True
    assert Resolver(template).physical_name(table.logical_id) == "loyalty-local-LoyaltyTable"


def test_buses_and_queues_are_found_by_type(template: Template) -> None:
    assert [b.logical_id for b in template.event_buses] == ["LoyaltyBus"]
    assert {q.logical_id for q in template.queues} >= {"EventPublisherDeadLetterQueue", "OrderEventsDeadLetterQueue"}
    # An explicit Name is honoured after !Sub resolves ${AWS::StackName}
    assert Resolver(template, stack_name="other").physical_name("LoyaltyBus") == "other-loyalty"


def test_globals_reach_every_function_and_resolve_to_local_names(template: Template) -> None:
    resolver = Resolver(template)
    for function in template.functions.values():
        env = resolver.function_environment(function)
        assert env["TABLE_NAME"] == "loyalty-local-LoyaltyTable"
        assert env["EVENT_BUS_NAME"] == "loyalty-local-loyalty"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"  # !Ref of a parameter: its default
        assert function.handler_file.name == "app.py"
        assert function.handler_file.parent == ROOT / "functions" / function.code_uri.name
        assert function.timeout > 0 and function.memory_size >= 128


def test_the_api_stage_is_the_stage_parameter_default(template: Template) -> None:
    assert Resolver(template).stage("LoyaltyApi") == template.parameters["Stage"] == "prod"
