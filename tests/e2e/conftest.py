"""The local stack over HTTP, as an app or a partner would call it: once on DynamoDB Local, once on moto."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack
from loyalty.points.rewards import Reward, RewardKind
from loyalty.runtime import loyalty_service

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "dev:admin:ops-alice"
SERVICE = "dev:service:commerce"
# The consent the members of segmentation tests give at enrolment: behavioural segments need profiling consent.
PROFILED = {"email": True, "profiling": True}
WEB_APP = "https://app.example.com"  # the AllowedOrigins the e2e stack is deployed with


@pytest.fixture(scope="package", params=["dynamodb-local", "moto"])
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    backend = "local" if request.param == "dynamodb-local" else "moto"
    if backend == "local" and shutil.which("java") is None:
        pytest.skip("DynamoDB Local needs java")
    with LocalStack(root=ROOT, dynamodb=backend, port=0, parameters={"AllowedOrigins": WEB_APP}) as running:
        service = loyalty_service()
        service.store.put_reward(
            Reward(reward_id="ten-points", name="Ten-point treat", kind=RewardKind.FREE_PRODUCT, cost_points=10)
        )
        service.store.put_reward(
            Reward(
                reward_id="coupon",
                name="$5 off",
                kind=RewardKind.DISCOUNT_FIXED,
                cost_points=100,
                value=Decimal(5),
                currency="USD",
            )
        )
        service.catalog.clear()
        yield running


class Api:
    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        token: str | None = ADMIN,
        json: Any = None,
        headers: dict[str, str] | None = None,
        data: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.http.request(
            method, self.base + path, json=json, data=data, headers=all_headers, params=params, timeout=30
        )

    def enroll(self, **extra: Any) -> str:
        body = {"external_id": f"cust-{uuid.uuid4().hex[:12]}", **extra}
        response = self.call("POST", "/v1/members", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["member_id"])

    def purchase(self, member_id: str, amount: str, order_id: str | None = None, **extra: Any) -> requests.Response:
        body = {
            "type": "purchase",
            "order_id": order_id or f"o-{uuid.uuid4().hex[:12]}",
            "amount": amount,
            "currency": "USD",
            **extra,
        }
        return self.call("POST", f"/v1/members/{member_id}/activities", token=SERVICE, json=body)

    def member(self, member_id: str) -> dict[str, Any]:
        response = self.call("GET", f"/v1/members/{member_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def ledger(self, member_id: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = self.call("GET", f"/v1/members/{member_id}/ledger", params=params)
            assert page.status_code == 200, page.text
            entries.extend(page.json()["entries"])
            cursor = page.json()["next_cursor"]
            if not cursor:
                return entries


@pytest.fixture
def api(stack: LocalStack) -> Api:
    return Api(stack.api_url)
