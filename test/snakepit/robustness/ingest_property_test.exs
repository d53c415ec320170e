defmodule Snakepit.Robustness.IngestPropertyTest do
  # Issue 11, "a property layer that reaches the NIF's encoding": generated
  # events (Snakepit.Test.WireEvents: every wire type, extreme numbers,
  # invalid UTF-8, sizes around each limit, random bytes) go over real gRPC
  # from a peer that replays them, through the NIF's decoding, validation
  # and term encoding, into a real :telemetry handler. Every delivered term
  # must be well-formed, and every event is either delivered or counted as
  # rejected by reason: nothing is lost, nothing crashes.
  use ExUnit.Case, async: false

  alias Snakepit.Telemetry.{Catalog, GrpcStream, Naming}
  alias Snakepit.Test.{HostileWorker, WireEvents}

  import Snakepit.Test.Eventually

  @events 20_000
  @limits Catalog.limits()
  @measurement_keys MapSet.new(Catalog.measurement_keys())
  @metadata_keys MapSet.new(Catalog.metadata_keys())
  @python_events MapSet.new(Naming.python_events())
  @reserved [:node, :worker_id, :pool_name, :python_pid, :correlation_id, :timestamp_ns]

  @tag timeout: 120_000
  test "generated wire events: delivered terms are well-formed, the rest counted by reason" do
    seed = System.get_env("SNAKEPIT_PROPERTY_SEED", "#{:rand.uniform(1_000_000)}")
    seed = String.to_integer(seed)
    events = WireEvents.generate(@events, seed)
    path = Path.join(System.tmp_dir!(), "snakepit_property_#{seed}.frames")
    File.write!(path, WireEvents.frames_file(WireEvents.frames(events, 100, seed)))
    on_exit(fn -> File.rm(path) end)

    id = "property#{seed}"
    table = :ets.new(:property, [:public, :bag])
    counter = :counters.new(1, [])

    :telemetry.attach_many(
      "property-#{id}",
      Naming.python_events(),
      &__MODULE__.check/4,
      {id, table, counter}
    )

    on_exit(fn -> :telemetry.detach("property-#{id}") end)
    on_exit(fn -> GrpcStream.unregister_worker(id) end)

    peer = HostileWorker.start!("replay", ["--frames", path])
    {:ok, _} = GrpcStream.register_worker(peer.endpoint, %{worker_id: id, pool_name: :prop})

    s =
      eventually(
        fn ->
          {:ok, s} = GrpcStream.stats(id)
          s.events_received == @events and s.events_delivered + s.rejected == @events and s
        end,
        tries: 1_000,
        message: fn _ -> "seed #{seed}: #{inspect(GrpcStream.stats(id))}" end
      )

    :sys.get_state(GrpcStream)
    eventually(fn -> :counters.get(counter, 1) == s.events_delivered end)

    bad = :ets.lookup(table, :bad)
    assert bad == [], "seed #{seed}: ill-formed terms: #{inspect(Enum.take(bad, 3))}"
    # The generator reached both sides and several reasons.
    assert s.events_delivered > @events / 10 and s.rejected > @events / 10, inspect(s)
    assert map_size(s.rejected_by_reason) >= 5, inspect(s.rejected_by_reason)

    if System.get_env("SNAKEPIT_PROPERTY_REPORT"),
      do: IO.inspect({seed, s.events_delivered, s.rejected_by_reason})

    assert s.state == :open and s.reconnects == 0
  end

  @doc false
  def check(event, measurements, metadata, {id, table, counter}) do
    if metadata[:worker_id] == id do
      :counters.add(counter, 1, 1)

      unless well_formed?(event, measurements, metadata),
        do: :ets.insert(table, {:bad, {event, measurements, metadata}})
    end
  end

  defp well_formed?(event, measurements, metadata) do
    MapSet.member?(@python_events, event) and is_map(measurements) and is_map(metadata) and
      map_size(measurements) <= @limits.max_measurements and
      Enum.all?(measurements, &measurement?/1) and
      Enum.all?(Map.drop(metadata, @reserved), &metadata?/1) and reserved?(metadata)
  end

  defp measurement?({k, v}), do: key?(k, @measurement_keys) and (is_integer(v) or is_float(v))

  defp metadata?({k, v}) do
    key?(k, @metadata_keys) and is_binary(v) and String.valid?(v) and
      byte_size(v) <= @limits.max_metadata_value_bytes
  end

  defp key?(k, allowlist) when is_atom(k), do: MapSet.member?(allowlist, k)

  defp key?(k, _) when is_binary(k),
    do: String.valid?(k) and byte_size(k) in 1..@limits.max_key_bytes

  defp key?(_, _), do: false

  defp reserved?(md) do
    md.node == node() and is_binary(md.worker_id) and md.pool_name == :prop and
      (is_nil(md.correlation_id) or
         (is_binary(md.correlation_id) and
            byte_size(md.correlation_id) <= @limits.max_correlation_id_bytes)) and
      (is_nil(md.timestamp_ns) or is_integer(md.timestamp_ns))
  end
end
