"""snakepit_bridge.server.codec: ExecuteTool parameters and results as the
reference encodes them (raw JSON bytes in ``Any``), and bounded texts."""

from __future__ import annotations

import json
import math

import pytest
from google.protobuf import any_pb2, wrappers_pb2

from snakepit_bridge import tools
from snakepit_bridge.server import codec


def test_parameters_are_json_bytes_or_packed_string_values() -> None:
    raw = any_pb2.Any(type_url=codec.JSON_TYPE_URL, value=b'{"a": [1, 2]}')
    packed = any_pb2.Any(
        type_url=codec.JSON_TYPE_URL,
        value=wrappers_pb2.StringValue(value='"text"').SerializeToString(),
    )
    assert codec.decode_parameters({"x": raw, "y": packed}) == {"x": {"a": [1, 2]}, "y": "text"}
    with pytest.raises(codec.ParameterError, match="'z' is not JSON"):
        codec.decode_parameters({"z": any_pb2.Any(type_url="t", value=b"{oops")})


def test_results_are_compact_utf8_json_and_refuse_what_json_cannot_carry() -> None:
    packed = codec.encode_json({"é": 1.5, "l": [True, None]})
    assert packed.type_url == codec.JSON_TYPE_URL
    assert json.loads(packed.value) == {"é": 1.5, "l": [True, None]}
    assert b" " not in packed.value
    for bad in (math.nan, object()):
        with pytest.raises((TypeError, ValueError)):
            codec.encode_json(bad)


def test_error_messages_name_the_type_unless_the_caller_erred() -> None:
    assert codec.error_message(tools.ToolError("unknown tool 'x'")) == "unknown tool 'x'"
    assert codec.error_message(codec.ParameterError("bad")) == "bad"
    assert codec.error_message(KeyError("k")) == "KeyError: 'k'"
