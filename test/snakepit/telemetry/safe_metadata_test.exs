defmodule Snakepit.Telemetry.SafeMetadataTest do
  use ExUnit.Case, async: true
  doctest Snakepit.Telemetry.SafeMetadata

  alias Snakepit.Telemetry.{Catalog, SafeMetadata}

  describe "sanitize/1" do
    test "allowlisted keys become atoms, others stay strings" do
      assert SafeMetadata.sanitize(%{"worker_id" => "w1", "mine" => "x", :tool => "t"}) ==
               %{worker_id: "w1", tool: "t"} |> Map.put("mine", "x")
    end

    test "atom keys outside the allowlist become strings" do
      assert SafeMetadata.sanitize(%{not_allowlisted_key: 1}) == %{"not_allowlisted_key" => "1"}
    end

    test "bounds values and entries" do
      max = Catalog.limits().max_metadata_value_bytes
      long = String.duplicate("é", max)
      out = SafeMetadata.sanitize(%{"tool" => long, "t" => {:a, self()}})
      assert byte_size(out.tool) <= max and String.valid?(out.tool)
      assert is_binary(out["t"])

      many = Map.new(1..500, &{"k#{&1}", &1})
      assert map_size(SafeMetadata.sanitize(many)) == Catalog.limits().max_metadata
    end
  end

  describe "enrich/2" do
    test "adds node, worker context, correlation id and timestamp" do
      meta =
        SafeMetadata.enrich(%{tool: "t", correlation_id: " "}, %{
          worker_id: "w1",
          pool_name: :default,
          python_pid: 42
        })

      assert %{node: node, worker_id: "w1", pool_name: :default, python_pid: 42} = meta
      assert node == node()
      assert meta.correlation_id == nil
      assert is_integer(meta.timestamp_ns)
    end

    test "the event's correlation id and timestamp win over the context's" do
      meta = SafeMetadata.enrich(%{correlation_id: "c1", timestamp_ns: 5}, correlation_id: "c0")
      assert meta.correlation_id == "c1" and meta.timestamp_ns == 5
      assert SafeMetadata.enrich(%{}, correlation_id: "c0").correlation_id == "c0"
    end

    test "the context overrides worker-sent identity" do
      assert SafeMetadata.enrich(%{worker_id: "spoofed"}, worker_id: "w1").worker_id == "w1"
    end
  end

  test "merge/2 sanitizes both, the second wins" do
    assert SafeMetadata.merge(%{"tool" => "a", "x" => 1}, %{tool: "b"}) == %{
             "x" => "1",
             tool: "b"
           }
  end

  test "truncate/2 never splits a character" do
    assert SafeMetadata.truncate("héllo", 2) == "h"
    assert SafeMetadata.truncate("héllo", 3) == "hé"
    assert SafeMetadata.truncate(<<255, 255, 255>>, 2) == <<255, 255>>
  end
end
