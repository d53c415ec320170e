"""``ExecuteTool`` encoding, as the reference Snakepit: each ``parameters``
value is a ``google.protobuf.Any`` whose ``value`` is the raw JSON bytes of
the parameter (type URL ``StringValue``); results are encoded the same way."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from google.protobuf import any_pb2, wrappers_pb2

from snakepit_bridge import tools

#: ``Any.type_url`` of parameters and results (their ``value`` is raw JSON).
JSON_TYPE_URL = "type.googleapis.com/google.protobuf.StringValue"


class ParameterError(ValueError):
    """A parameter is not valid JSON."""


def decode_parameters(parameters: Any) -> dict[str, Any]:
    """``map<string, Any>`` -> ``dict``: each value's bytes are parsed as JSON.

    A value packed the protobuf way (a serialized ``StringValue`` holding JSON)
    is accepted too."""
    decoded: dict[str, Any] = {}
    for name, packed in parameters.items():
        try:
            decoded[name] = json.loads(packed.value)
            continue
        except ValueError:
            pass
        if packed.type_url == JSON_TYPE_URL:
            with contextlib.suppress(Exception):
                decoded[name] = json.loads(wrappers_pb2.StringValue.FromString(packed.value).value)
                continue
        raise ParameterError(f"parameter {name!r} is not JSON ({packed.value[:40]!r})")
    return decoded


def encode_json(value: Any) -> any_pb2.Any:
    """A JSON value as the reference's ``Any`` (raw JSON bytes); raises
    ``TypeError``/``ValueError`` for values JSON cannot carry (objects, NaN)."""
    data = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return any_pb2.Any(type_url=JSON_TYPE_URL, value=data.encode("utf-8"))


def error_message(exc: BaseException) -> str:
    """What the caller reads: the message alone for errors the caller made
    (unknown tool, bad parameter, :class:`~snakepit_bridge.tools.ToolError`),
    else ``"<ExceptionType>: <message>"``."""
    if isinstance(exc, tools.ToolError | ParameterError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
