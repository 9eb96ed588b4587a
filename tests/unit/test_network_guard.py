"""The unit suite is sealed: a test that reaches for the network fails instead of quietly calling AWS."""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.exceptions import HTTPClientError

from tests.unit.conftest import NetworkBlocked


def test_opening_a_connection_in_a_unit_test_fails() -> None:
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)


def test_a_boto3_call_in_a_unit_test_fails_before_leaving_the_machine() -> None:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        endpoint_url="http://127.0.0.1:9",
    )
    with pytest.raises(HTTPClientError, match="unit tests may not open connections"):
        client.list_tables()
