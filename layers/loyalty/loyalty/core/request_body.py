"""Reading a request body: one strict reader for every API route (docs/api-edge.md).

A body is read only after the caller is authenticated and authorised for the route. It is refused with a 4xx,
never a 5xx, when it is too large (413), not JSON by its content type (415), not UTF-8, not JSON, has a key twice,
nests deeper than MAX_DEPTH or holds a number longer than MAX_NUMBER_LENGTH characters (400). Python's own parser
would take the last of two duplicate keys (`"amount": 10, "amount": 900000` earns 900,000 points), raise
RecursionError on 100,000 nested arrays and ValueError on a 5,000-digit integer: each is a refusal here.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

from loyalty.core.errors import LoyaltyError

MAX_BODY_BYTES = 1_048_576  # 1 MiB: far above any member or admin request; API Gateway itself stops at 10 MB
MAX_DEPTH = 32  # objects and arrays inside each other
MAX_NUMBER_LENGTH = 40  # characters in one JSON number: 15 digits and 3 decimals need 19


class MalformedBody(LoyaltyError):
    status = 400
    code = "malformed_json"


class UnsupportedMediaType(LoyaltyError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(LoyaltyError):
    status = 413
    code = "payload_too_large"


def _malformed(reason: str) -> MalformedBody:
    return MalformedBody(f"the request body is not acceptable JSON: {reason}", field="body")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _malformed(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def _integer(token: str) -> int:
    if len(token) > MAX_NUMBER_LENGTH:
        raise _malformed(f"a number has more than {MAX_NUMBER_LENGTH} characters")
    return int(token)


def _number(token: str) -> float:
    if len(token) > MAX_NUMBER_LENGTH:
        raise _malformed(f"a number has more than {MAX_NUMBER_LENGTH} characters")
    value = float(token)
    if not math.isfinite(value):
        raise _malformed(f"the number {token} is out of range")
    return value


def _constant(token: str) -> Any:
    raise _malformed(f"{token} is not JSON")


def _depth_within(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def parse_json(text: str) -> Any:
    """JSON as this API accepts it: unique keys, bounded numbers and depth, no NaN or Infinity."""
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_integer,
            parse_float=_number,
            parse_constant=_constant,
        )
    except MalformedBody:
        raise
    except RecursionError:
        raise _malformed(f"it nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError is a ValueError
        raise _malformed(str(error.args[0] if error.args else error)) from None
    if not _depth_within(value, MAX_DEPTH):
        raise _malformed(f"it nests deeper than {MAX_DEPTH} levels")
    return value


def is_json_media_type(content_type: str) -> bool:
    """application/json or application/<something>+json, with no charset or charset=utf-8."""
    media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def read_body(event: Mapping[str, Any], max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The proxy event's body, parsed; None when there is none. Raises a 4xx LoyaltyError otherwise."""
    raw = event.get("body")
    if raw is None or raw == "":
        return None
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            raise _malformed("the body is not valid base64") from None
    else:
        data = str(raw).encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes", field="body")
    content_type = _header(event.get("headers"), "content-type")
    if content_type is None or not is_json_media_type(content_type):
        raise UnsupportedMediaType(
            f"send the body as Content-Type: application/json, not {content_type or 'no content type'}",
            field="Content-Type",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("it is not UTF-8") from None
    if not text.strip():
        return None
    return parse_json(text)
