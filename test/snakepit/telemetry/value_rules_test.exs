defmodule Snakepit.Telemetry.ValueRulesTest do
  @moduledoc """
  Elixir's side of the value rules table (`priv/catalog/value_rules.json`):
  the metadata cases Elixir can be handed go through `SafeMetadata.sanitize/1`
  and come out as the table says, as they do through Python's coercion and
  Rust's gRPC and stderr paths (their own tests read the same table).
  """
  use ExUnit.Case, async: true

  alias Snakepit.Telemetry.Catalog.JSON
  alias Snakepit.Telemetry.SafeMetadata

  @rules Path.expand("../../../priv/catalog/value_rules.json", __DIR__)
         |> File.read!()
         |> JSON.decode!()

  defp value(%{"repeat" => text, "times" => n}), do: String.duplicate(text, n)
  defp value(other), do: other

  for rule <- @rules["metadata"], "elixir" in rule["paths"] do
    @rule rule
    test "metadata: #{rule["case"]}" do
      out = SafeMetadata.sanitize(%{"k" => value(@rule["input"])})

      case @rule["expect"] do
        "dropped" -> refute Map.has_key?(out, "k")
        %{"value" => want} -> assert out == %{"k" => value(want)}
      end
    end
  end

  test "float_text/1 reads back as the same float, for random bit patterns" do
    for _ <- 1..20_000 do
      <<f::float>> = finite_float_bits()
      text = SafeMetadata.float_text(f)
      assert {^f, ""} = Float.parse(text), text
    end
  end

  defp finite_float_bits do
    bits = :crypto.strong_rand_bytes(8)

    case bits do
      <<_::1, 0x7FF::11, _::52>> -> finite_float_bits()
      finite -> finite
    end
  end

  test "Control accepts every glob of the table" do
    patterns = @rules["globs"] |> Enum.map(& &1["pattern"]) |> Enum.uniq()
    assert {:ok, ^patterns} = Snakepit.Telemetry.Control.patterns(patterns)
  end

  test "Elixir's glob matcher (for Elixir-name patterns) answers every glob case as Python" do
    for %{"pattern" => p, "name" => name, "match" => match} <- @rules["globs"] do
      assert Snakepit.Telemetry.Glob.match?(p, name) == match, "#{p} vs #{name}"
    end
  end

  test "the table has Elixir cases" do
    assert Enum.count(@rules["metadata"], &("elixir" in &1["paths"])) >= 10
  end
end
