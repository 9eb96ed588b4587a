"""Intrinsic functions get local values; what has no local meaning becomes a visible placeholder, never a crash."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devstack.template import Resolver, Template, load_template, load_yaml

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Env:
    Type: String
    Default: dev
  NoDefault:
    Type: String
Mappings:
  Sizes:
    dev: {memory: 256}
Conditions:
  IsDev: !Equals [!Ref Env, dev]
  IsProd: !Not [!Condition IsDev]
  Both: !And [!Condition IsDev, !Or [!Condition IsProd, !Equals [a, a]]]
Globals:
  Function:
    Timeout: 5
    Layers: [!Ref SharedLayer]
    Environment:
      Variables:
        SHARED: from-globals
        OVERRIDDEN: from-globals
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: layer}
  Orders:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
  Named:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-named-${Env}"
  Jobs:
    Type: AWS::SQS::Queue
  Alerts:
    Type: AWS::SNS::Topic
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: !Join ["-", [!Ref "AWS::StackName", bus]]}
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/worker
      Handler: pkg.main.handle
      Timeout: 9
      Layers: [!Ref OtherLayer]
      Environment:
        Variables:
          OVERRIDDEN: from-function
          QUEUE_URL: !Ref Jobs
          QUEUE_ARN: !GetAtt Jobs.Arn
          QUEUE_NAME: !GetAtt Jobs.QueueName
          TOPIC: !Ref Alerts
          MEMORY: !FindInMap [Sizes, !Ref Env, memory]
          MODE: !If [IsDev, development, production]
          FIRST_AZ: !Select [0, !GetAZs ""]
          PARTS: !Select [1, !Split [",", "a,b,c"]]
          ENCODED: !Base64 hi
          IMPORTED: !ImportValue shared-vpc
          MISSING: !GetAtt Nowhere.Arn
          DROPPED: !If [IsProd, kept, !Ref "AWS::NoValue"]
          BOTH: !If [Both, "yes", "no"]
  OtherLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: other}
"""


@pytest.fixture
def template(tmp_path: Path) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(TEMPLATE))
    return load_template(path)


def test_short_tags_load_as_their_long_form() -> None:
    loaded = load_yaml("a: !Ref X\nb: !GetAtt T.StreamArn\nc: !Sub 'x-${Y}'\nd: !If [C, 1, 2]\ne: !Condition C\n")

    assert loaded == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["T", "StreamArn"]},
        "c": {"Fn::Sub": "x-${Y}"},
        "d": {"Fn::If": ["C", 1, 2]},
        "e": {"Condition": "C"},
    }


def test_resources_without_a_name_get_stack_dash_logical_id(template: Template) -> None:
    resolver = Resolver(template, stack_name="shop")

    assert resolver.ref("Orders") == "shop-Orders"
    assert resolver.ref("Named") == "shop-named-dev"
    assert resolver.ref("Bus") == "shop-bus"
    assert resolver.ref("Env") == "dev"
    assert resolver.ref("AWS::Region") == "us-east-1"
    assert resolver.ref("AWS::AccountId") == "123456789012"


def test_function_environment_merges_globals_and_resolves_every_intrinsic(template: Template) -> None:
    resolver = Resolver(template, queue_endpoint="http://127.0.0.1:5000")
    worker = template.function("Worker")

    env = resolver.function_environment(worker)

    assert env["SHARED"] == "from-globals"
    assert env["OVERRIDDEN"] == "from-function"
    assert env["QUEUE_URL"] == "http://127.0.0.1:5000/123456789012/loyalty-local-Jobs"
    assert env["QUEUE_ARN"] == "arn:aws:sqs:us-east-1:123456789012:loyalty-local-Jobs"
    assert env["QUEUE_NAME"] == "loyalty-local-Jobs"
    assert env["TOPIC"] == "arn:aws:sns:us-east-1:123456789012:loyalty-local-Alerts"
    assert env["MEMORY"] == "256"
    assert env["MODE"] == "development"
    assert env["FIRST_AZ"] == "us-east-1a"
    assert env["PARTS"] == "b"
    assert env["ENCODED"] == "aGk="
    assert env["BOTH"] == "yes"
    assert "DROPPED" not in env  # AWS::NoValue removes the key
    assert env["IMPORTED"].startswith("<unresolved")
    assert env["MISSING"].startswith("<unresolved")


def test_globals_scalars_are_replaced_and_lists_add_up(template: Template) -> None:
    worker = template.function("Worker")

    assert worker.timeout == 9
    assert worker.layers == ({"Ref": "SharedLayer"}, {"Ref": "OtherLayer"})
    assert worker.handler_module == "pkg.main" and worker.handler_function == "handle"
    assert worker.handler_file == template.root / "src" / "worker" / "pkg" / "main.py"


def test_attributes_known_after_creation_replace_the_guesses(template: Template) -> None:
    resolver = Resolver(template)
    assert "<unresolved" in resolver.resolve({"Fn::GetAtt": ["Orders", "StreamArn"]})

    resolver.set_attribute("Orders", "StreamArn", "arn:aws:dynamodb:ddblocal:000000000000:table/x/stream/1")

    assert resolver.resolve({"Fn::GetAtt": ["Orders", "StreamArn"]}).endswith("/stream/1")
    assert resolver.resolve({"Fn::Sub": "${Orders.StreamArn}"}).endswith("/stream/1")


def test_unknown_and_malformed_intrinsics_become_placeholders(template: Template) -> None:
    resolver = Resolver(template)

    assert resolver.resolve({"Ref": "Nope"}) == "<unresolved Ref Nope>"
    assert resolver.resolve({"Ref": "NoDefault"}).startswith("<unresolved parameter NoDefault")
    assert resolver.resolve({"Fn::Select": [7, ["a"]]}).startswith("<unresolved Fn::Select")
    assert resolver.resolve({"Fn::SomethingNew": 1}).startswith("<unresolved Fn::SomethingNew")
    assert resolver.resolve({"Fn::Sub": "${Nope}-${!Literal}"}) == "<unresolved Ref Nope>-${Literal}"


def test_cidr_splits_a_block(template: Template) -> None:
    assert Resolver(template).resolve({"Fn::Cidr": ["10.0.0.0/16", 2, 8]}) == ["10.0.0.0/24", "10.0.1.0/24"]


def test_layers_are_found_with_their_content_folders(template: Template) -> None:
    assert template.layers["SharedLayer"].content_uri == template.root / "layer"
