defmodule Snakepit.Telemetry.ControlTest do
  use ExUnit.Case, async: true
  doctest Snakepit.Telemetry.Control

  alias Snakepit.Telemetry.Control

  describe "toggle/1" do
    test "takes booleans only" do
      assert Control.toggle(true) == {:ok, {:toggle, true}}
      assert Control.toggle(nil) == {:error, {:invalid_enabled, nil}}
    end
  end

  describe "sampling/2" do
    test "accepts 0.0..1.0, integers included" do
      assert Control.sampling(0) == {:ok, {:sampling, 0.0, []}}
      assert Control.sampling(1) == {:ok, {:sampling, 1.0, []}}
      assert Control.sampling(0.1, ["python.*"]) == {:ok, {:sampling, 0.1, ["python.*"]}}
    end

    test "rejects bad rates and patterns" do
      for bad <- [-0.1, 1.01, "0.5", nil, :half] do
        assert Control.sampling(bad) == {:error, {:invalid_rate, bad}}
      end

      assert Control.sampling(0.5, ["ok.*", "bad pattern"]) ==
               {:error, {:invalid_pattern, "bad pattern"}}

      assert Control.sampling(0.5, "python.*") == {:error, {:invalid_patterns, "python.*"}}
      assert Control.sampling(0.5, [:atom]) == {:error, {:invalid_pattern, :atom}}
      limits = Snakepit.Telemetry.Catalog.limits()
      too_long = String.duplicate("a", limits.max_pattern_bytes + 1)
      assert {:error, {:invalid_pattern, _}} = Control.sampling(0.5, [too_long])
      too_many = List.duplicate("a", limits.max_patterns + 1)
      assert {:error, {:invalid_patterns, _}} = Control.sampling(0.5, too_many)
      assert {:ok, _} = Control.sampling(0.5, List.duplicate("a", limits.max_patterns))
    end
  end

  describe "filter/1" do
    test "allow and deny default to empty" do
      assert Control.filter([]) == {:ok, {:filter, [], []}}
      assert Control.filter(deny: ["python.gc.*"]) == {:ok, {:filter, [], ["python.gc.*"]}}
    end

    test "rejects unknown options and bad patterns" do
      assert Control.filter(alow: ["x"]) == {:error, {:invalid_option, {:alow, ["x"]}}}
      assert Control.filter(allow: [""]) == {:error, {:invalid_pattern, ""}}
      assert Control.filter(%{allow: []}) == {:error, {:invalid_option, %{allow: []}}}
      assert Control.filter([:allow]) == {:error, {:invalid_option, :allow}}
    end
  end
end
