defmodule Snakepit.Docs.EventReferenceTest do
  # The event reference (Snakepit.Telemetry.Events, generated from the
  # catalog) against what arrives: every event the library emits is driven
  # here through the real path (a pool of a real Python worker, tool calls,
  # a failing start, a peer that dies and comes back), and the keys each
  # emission carries are compared with the documented ones, both ways.
  use ExUnit.Case, async: false

  alias Snakepit.{GRPCWorker, Pool}
  alias Snakepit.Telemetry.{Catalog, Events, GrpcStream, Naming}
  alias Snakepit.Test.LoadGen

  import Snakepit.Test.Eventually

  @moduletag timeout: 120_000

  @doc false
  def record(event, measurements, metadata, table) do
    # The load generator's Python events are random (not what the library
    # emits): only its stream and connection events count.
    unless match?([:snakepit, :python | _], event) and metadata[:worker_id] == "docs-lg" do
      :ets.insert(table, {event, Map.keys(measurements), Map.keys(metadata)})
    end
  rescue
    # The test is over (its table is gone) before the handler is detached.
    ArgumentError -> :ok
  end

  setup do
    table = :ets.new(:seen, [:bag, :public])
    handler = "event-reference-#{System.unique_integer([:positive])}"
    :telemetry.attach_many(handler, Naming.events(), &__MODULE__.record/4, table)
    on_exit(fn -> :telemetry.detach(handler) end)
    {:ok, table: table}
  end

  defp drive_everything do
    {:ok, _} =
      Pool.start_link(
        name: :event_docs,
        size: 1,
        demo_tools: true,
        worker_args: ["--sample-interval-ms", "50"],
        status_interval: 50
      )

    {:ok, w} = Pool.checkout(:event_docs)
    {:ok, _} = GRPCWorker.execute(w, "ping", %{}, correlation_id: "docs-1")
    {:error, {:tool_error, _}} = GRPCWorker.execute(w, "fail", %{}, correlation_id: "docs-2")
    {:ok, _} = GRPCWorker.execute(w, "telemetry_demo", %{operation: "gc", delay_ms: 1})

    # The queue: one caller waits for the held worker, one gives up.
    waiter =
      Task.async(fn -> Pool.execute(:event_docs, "ping", %{}, correlation_id: "docs-3") end)

    eventually(fn -> Pool.status(:event_docs).queue_depth == 1 end)
    {:error, :pool_timeout} = Pool.checkout(:event_docs, checkout_timeout: 10)
    :ok = Pool.checkin(:event_docs, w)
    {:ok, _} = Task.await(waiter)

    # A worker whose Python process dies is restarted.
    {:ok, %{python_pid: os_pid}} = GRPCWorker.info(w)

    ExUnit.CaptureLog.capture_log(fn ->
      System.cmd("kill", ["-KILL", "#{os_pid}"])
      eventually(fn -> match?([p] when p != w, Pool.workers(:event_docs)) end, tries: 400)
    end)

    # A start that fails.
    Process.flag(:trap_exit, true)

    ExUnit.CaptureLog.capture_log(fn ->
      {:error, _} = GRPCWorker.start_link(id: "docs-bad", python: "/no/such/python")
    end)

    # A peer that dies and comes back: lost, closed, reconnected, opened.
    lg = LoadGen.start!(["--rate", "50"])
    id = "docs-lg"
    {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id}, backoff_initial_ms: 50)
    on_exit(fn -> GrpcStream.unregister_worker(id) end)
    eventually(fn -> match?({:ok, %{state: :open}}, GrpcStream.stats(id)) end)
    LoadGen.kill(lg)
    LoadGen.start!(["--rate", "50"], port: lg.port)
    eventually(fn -> match?({:ok, %{reconnects: n}} when n > 0, GrpcStream.stats(id)) end)

    # And a pool that stops: its worker terminates.
    :ok = Pool.stop(:event_docs)
  end

  defp documented_emitted, do: for(e <- Catalog.entries(), e.emitted, do: e.event)

  test "every emitted event arrives with its documented keys, and only documented keys",
       %{table: table} do
    drive_everything()
    wanted = MapSet.new(documented_emitted())

    eventually(
      fn ->
        seen = MapSet.new(:ets.select(table, [{{:"$1", :_, :_}, [], [:"$1"]}]))
        MapSet.subset?(wanted, seen) || {:missing, MapSet.difference(wanted, seen)}
      end,
      tries: 400,
      interval: 25,
      message: fn missing -> "never emitted: #{inspect(missing)}" end
    )

    reserved = for e <- Catalog.entries(), not e.emitted, do: e.event
    assert [] == for(e <- reserved, :ets.lookup(table, e) != [], do: e), "a reserved event fired"

    for event <- MapSet.to_list(wanted) do
      doc = Naming.describe(event)
      emissions = :ets.lookup(table, event)

      for {_, measurements, metadata} <- emissions do
        assert measurements -- doc.measurements == [],
               "#{inspect(event)}: undocumented measurements #{inspect(measurements -- doc.measurements)}"

        assert metadata -- doc.metadata == [],
               "#{inspect(event)}: undocumented metadata #{inspect(metadata -- doc.metadata)}"

        assert doc.sent.measurements -- measurements == [],
               "#{inspect(event)}: documented as always sent but missing: " <>
                 inspect(doc.sent.measurements -- measurements)

        assert doc.sent.metadata -- metadata == [],
               "#{inspect(event)}: documented as always sent but missing: " <>
                 inspect(doc.sent.metadata -- metadata)
      end
    end
  end

  test "the reference documents every catalog event, its units and whether it is emitted" do
    doc = Events.reference()

    for entry <- Catalog.entries() do
      assert doc =~ "### `#{inspect(entry.event)}`"
      for key <- entry.measurements, do: assert(Catalog.unit(key), "no unit for #{key}")
    end

    assert doc =~ "Reserved"
    assert {:docs_v1, _, _, _, %{"en" => moduledoc}, _, _} = Code.fetch_docs(Events)
    assert moduledoc =~ doc
  end
end
