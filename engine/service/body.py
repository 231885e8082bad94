"""Request bodies read by the strict JSON reader the command line uses (engine/strictjson), never
by the web framework's: a key given twice, a lone surrogate, an endless integer or text that is
not UTF-8 is the caller's mistake, a 400 naming what and where, never a guess or a 500."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from engine.facts import Duplicated
from engine.service.errors import bad_request
from engine.strictjson import JsonRefused, loads

#: The largest body read: 10,000 snapshots of a few hundred bytes each fit with room to spare.
MAX_BODY_BYTES = 16 * 1024 * 1024

#: What OpenAPI says of every route reading a body this way (the framework cannot see it).
JSON_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object"}}}}}


async def json_body(request: Request) -> Any:
    """The request's JSON document, read strictly; ApiError 400 for anything else."""
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise bad_request(f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad_request(f"the body is not UTF-8 text (byte {e.start})") from None
    try:
        value = loads(text)
    except JsonRefused as e:
        raise bad_request(str(e)) from None
    except json.JSONDecodeError as e:
        raise bad_request(f"the body is not JSON: {e.msg} at line {e.lineno} column "
                          f"{e.colno}") from None
    except RecursionError:
        raise bad_request("the body is nested too deeply") from None
    repeated = _first_repeated_key(value)
    if repeated is not None:
        raise bad_request("this key is given more than once; which value was meant would be "
                          "a guess", repeated)
    return value


def _first_repeated_key(value: Any) -> str | None:
    """The dotted path of the first key an object of `value` repeats, or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, dict):
            for key, v in item.items():
                path = f"{at}.{key}" if at else str(key)
                if isinstance(v, Duplicated):
                    return path
                stack.append((path, v))
        elif isinstance(item, list):
            stack.extend((f"{at}.{n}" if at else str(n), v) for n, v in enumerate(item))
    return None
