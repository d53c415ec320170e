defmodule Snakepit.Telemetry.NamingTest do
  use ExUnit.Case, async: true
  doctest Snakepit.Telemetry.Naming

  alias Snakepit.Telemetry.Naming

  describe "from_parts/1" do
    test "maps every Python name onto its Elixir event" do
      for {py, event} <- Naming.python_event_catalog() do
        assert Naming.from_parts(py) == {:ok, event}
        assert Naming.from_parts(String.split(py, ".")) == {:ok, event}
      end
    end

    test "the reference mappings" do
      assert Naming.from_parts("tool.execution.stop") ==
               {:ok, [:snakepit, :python, :tool, :execution, :stop]}

      assert Naming.from_parts("python.call.start") == {:ok, [:snakepit, :python, :call, :start]}
    end

    test "rejects names outside the Python layer and junk" do
      for bad <- ["pool.initialized", "snakepit.pool.initialized", "", ["a", :b], 42, nil] do
        assert Naming.from_parts(bad) == {:error, :unknown_event}
      end
    end
  end

  describe "keys" do
    test "allowlisted keys are atoms, others strings" do
      assert Naming.measurement_key("rss_bytes") == :rss_bytes
      assert Naming.measurement_key(:rss_bytes) == :rss_bytes
      assert Naming.measurement_key("custom") == "custom"
      assert Naming.metadata_key("correlation_id") == :correlation_id
      assert Naming.metadata_key("duration") == "duration"
    end
  end

  describe "layers and builders" do
    test "lists per layer" do
      assert [:snakepit, :pool, :initialized] in Naming.infrastructure_events()
      assert [:snakepit, :python, :gc, :completed] in Naming.python_events()
      assert [:snakepit, :grpc, :connection, :reconnected] in Naming.grpc_events()

      assert length(Naming.events()) ==
               length(Naming.infrastructure_events() ++ Naming.python_events()) +
                 length(Naming.grpc_events())
    end

    test "builders return catalog events and raise on typos" do
      assert Naming.worker_event(:spawned) == [:snakepit, :pool, :worker, :spawned]
      assert Naming.pool_event([:queue, :timeout]) == [:snakepit, :pool, :queue, :timeout]
      assert Naming.session_event(:created) == [:snakepit, :session, :created]
      assert Naming.grpc_event([:stream, :opened]) == [:snakepit, :grpc, :stream, :opened]
      assert Naming.python_event([:call, :stop]) == [:snakepit, :python, :call, :stop]
      assert_raise ArgumentError, fn -> Naming.worker_event(:spwaned) end
    end

    test "describe/1 gives the documented keys" do
      assert %{measurements: [:rss_bytes, :vms_bytes, :system_time], layer: :python} =
               Naming.describe([:snakepit, :python, :memory, :sampled])

      assert Naming.describe([:nope]) == nil
      assert Naming.describe("no.such.event") == nil
    end

    test "describe/1 takes a Python name and lists the keys that arrive" do
      entry = Naming.describe("tool.result_size")
      assert entry == Naming.describe([:snakepit, :python, :tool, :result_size])
      assert [:timestamp_ns, :correlation_id, :python_pid] -- entry.metadata == []

      lost = Naming.describe([:snakepit, :grpc, :connection, :lost])
      assert :stream_id in lost.metadata and :error_message in lost.metadata
      refute :stream_id in Naming.describe([:snakepit, :pool, :initialized]).metadata
    end
  end
end
