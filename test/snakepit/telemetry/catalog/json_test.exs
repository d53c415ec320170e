defmodule Snakepit.Telemetry.Catalog.JSONTest do
  use ExUnit.Case, async: true

  alias Snakepit.Telemetry.Catalog.JSON

  test "decodes every JSON type" do
    text = ~s({"a": [1, -2.5, 1e3, true, false, null], "b": {"c": "d\\n\\u00e9\\ud83d\\ude00"}})

    assert JSON.decode(text) ==
             {:ok, %{"a" => [1, -2.5, 1000.0, true, false, nil], "b" => %{"c" => "d\né😀"}}}
  end

  test "empty containers and surrounding whitespace" do
    assert JSON.decode(" {} ") == {:ok, %{}}
    assert JSON.decode("[ ]") == {:ok, []}
  end

  test "rejects malformed input with a reason" do
    for bad <- ["{", "[1,]", ~s({"a":1,}), ~s({"a" 1}), "01", "tru", ~s("\\ud800"), "1 2", ""] do
      assert {:error, reason} = JSON.decode(bad), bad
      assert is_binary(reason)
    end
  end

  test "decode! raises ArgumentError" do
    assert_raise ArgumentError, fn -> JSON.decode!("{") end
  end
end
