defmodule Snakepit.Telemetry.CatalogTest do
  use ExUnit.Case, async: true

  alias Snakepit.Telemetry.{Catalog, Native}
  alias Snakepit.Telemetry.Catalog.JSON
  alias Snakepit.Test.PythonHelpers

  describe "one catalog for three languages" do
    test "Rust compiled in the same catalog Elixir read" do
      assert JSON.decode!(Native.catalog_summary()) == Catalog.summary()
      assert Native.catalog_version() == Catalog.version()
    end

    test "Python reads the same catalog at import" do
      out = PythonHelpers.run_module!("snakepit_bridge.catalog", ["--summary"])
      assert JSON.decode!(out) == Catalog.summary()
    end
  end

  describe "contents" do
    test "holds every event of the reference, in three layers" do
      by_layer = Enum.group_by(Catalog.entries(), & &1.layer)
      assert length(by_layer.infrastructure) == 17
      assert length(by_layer.python) == 11
      assert length(by_layer.grpc) == 9
    end

    test "every event's keys are in the allowlists" do
      for e <- Catalog.entries() do
        assert e.measurements -- Catalog.measurement_keys() == [], inspect(e.event)
        assert e.metadata -- Catalog.metadata_keys() == [], inspect(e.event)
      end
    end

    test "limits are positive integers" do
      for {k, v} <- Catalog.limits(), do: assert(is_integer(v) and v > 0, "#{k}")
    end
  end
end
