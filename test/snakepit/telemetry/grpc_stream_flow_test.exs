defmodule Snakepit.Telemetry.GrpcStreamFlowTest do
  # RPC selection and flow control, against the load generator (a Rust gRPC
  # server of the worker protocol) at a controlled rate.
  use ExUnit.Case, async: false

  alias Snakepit.Telemetry.{GrpcStream, Naming}
  alias Snakepit.Test.LoadGen

  import Snakepit.Test.Eventually

  setup do
    worker_id = "lg#{System.unique_integer([:positive])}"
    on_exit(fn -> GrpcStream.unregister_worker(worker_id) end)
    {:ok, worker_id: worker_id}
  end

  defp wait_stats(id, fun) do
    eventually(
      fn ->
        {:ok, stats} = GrpcStream.stats(id)
        fun.(stats) && stats
      end,
      tries: 600,
      interval: 25,
      message: fn _ -> "stats never matched: #{inspect(GrpcStream.stats(id))}" end
    )
  end

  test "prefers the batched RPC and reports the worker's totals", %{worker_id: id} do
    lg = LoadGen.start!(["--rate", "2000"])
    {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id})
    stats = wait_stats(id, &(&1.events_delivered > 200))
    assert stats.rpc == "StreamTelemetryBatched"
    assert stats.python_emitted > 0
  end

  test "falls back to StreamTelemetry when the worker answers UNIMPLEMENTED", %{worker_id: id} do
    lg = LoadGen.start!(["--rate", "2000", "--stock-only"])
    ref = :telemetry_test.attach_event_handlers(self(), Naming.python_events())
    on_exit(fn -> :telemetry.detach(ref) end)
    {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id})
    assert_receive {[:snakepit, :python | _], _, _, %{worker_id: ^id}}, 5_000
    assert wait_stats(id, &(&1.events_delivered > 50)).rpc == "StreamTelemetry"
  end

  @doc false
  def count([:snakepit, :python, :tool, :result_size], _, %{worker_id: id}, {counts, id}),
    do: :counters.add(counts, 1, 1)

  def count(_event, _measurements, %{worker_id: id}, {counts, id}),
    do: :counters.add(counts, 2, 1)

  def count(_event, _measurements, _metadata, _config), do: :ok

  test "a reference-like stock peer: pattern sampling is applied here, the RPC is visible",
       %{worker_id: id} do
    # Stock RPC only, and patterns ignored: what a reference worker does.
    lg = LoadGen.start!(["--rate", "3000", "--stock-only", "--reference-sampling"])
    ref = :telemetry_test.attach_event_handlers(self(), [[:snakepit, :grpc, :stream, :opened]])
    on_exit(fn -> :telemetry.detach(ref) end)
    {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id})

    assert_receive {[:snakepit, :grpc, :stream, :opened], _, _,
                    %{worker_id: ^id, rpc_method: "StreamTelemetry"}},
                   5_000

    :ok = GrpcStream.update_sampling(id, 0.0, ["tool.result_size"])
    wait_stats(id, &(&1.sampling_applied_by == :nif and &1.nif_sampled_out > 20))
    # From here on no tool.result_size arrives; every other event still does.
    counts = :counters.new(2, [])
    handler = "sampled-#{id}"
    :telemetry.attach_many(handler, Naming.python_events(), &__MODULE__.count/4, {counts, id})
    on_exit(fn -> :telemetry.detach(handler) end)
    eventually(fn -> :counters.get(counts, 2) > 300 end, tries: 500, interval: 20)
    assert :counters.get(counts, 1) == 0
    {:ok, stats} = GrpcStream.stats(id)
    assert stats.accounting.dropped.sampled_out == stats.nif_sampled_out

    # Sampling without patterns goes to the worker again.
    :ok = GrpcStream.update_sampling(id, 1.0)
    wait_stats(id, &(&1.sampling_applied_by == :worker))
    eventually(fn -> :counters.get(counts, 1) > 0 end, tries: 250, interval: 20)
  end

  @doc false
  def count_kinds(event, _measurements, %{worker_id: id}, {counts, id}) do
    slot =
      case event do
        [:snakepit, :python, :tool, :result_size] -> 1
        [:snakepit, :python, :tool, :execution | _] -> 2
        _ -> 3
      end

    :counters.add(counts, slot, 1)
  end

  def count_kinds(_event, _measurements, _metadata, _config), do: :ok

  test "a reference-like stock peer that restarts gets every setting again", %{worker_id: id} do
    args = ["--rate", "3000", "--stock-only", "--reference-sampling"]
    lg = LoadGen.start!(args)

    ref =
      :telemetry_test.attach_event_handlers(self(), [
        [:snakepit, :grpc, :connection, :reconnected]
      ])

    on_exit(fn -> :telemetry.detach(ref) end)

    {:ok, _} =
      GrpcStream.register_worker(lg.endpoint, %{worker_id: id},
        backoff_initial_ms: 50,
        backoff_max_ms: 200
      )

    :ok = GrpcStream.update_filter(id, deny: ["tool.execution.*"])
    :ok = GrpcStream.update_sampling(id, 0.0, ["tool.result_size"])
    wait_stats(id, &(&1.sampling_applied_by == :nif and &1.nif_sampled_out > 0))

    # The peer dies and comes back empty (it starts disabled, no filter): only
    # a replay of toggle, filter and sampling gives what was asked.
    LoadGen.kill(lg)
    LoadGen.start!(args, port: lg.port)

    assert_receive {[:snakepit, :grpc, :connection, :reconnected], _, _, %{worker_id: ^id}},
                   10_000

    counts = :counters.new(3, [])
    handler = "replay-#{id}"

    :telemetry.attach_many(
      handler,
      Naming.python_events(),
      &__MODULE__.count_kinds/4,
      {counts, id}
    )

    on_exit(fn -> :telemetry.detach(handler) end)
    eventually(fn -> :counters.get(counts, 3) > 300 end, tries: 500, interval: 20)
    # Sampled out in the NIF (the stock peer ignores the pattern) and denied
    # by the peer after the replayed filter.
    assert {:counters.get(counts, 1), :counters.get(counts, 2)} == {0, 0}

    {:ok, stats} = GrpcStream.stats(id)
    assert stats.rpc == "StreamTelemetry" and stats.sampling_applied_by == :nif
    assert stats.reconnects >= 1
    assert stats.accounting.dropped.sampled_out == stats.nif_sampled_out
  end

  test "invalid events are rejected and counted, the stream goes on", %{worker_id: id} do
    lg = LoadGen.start!(["--rate", "5000", "--invalid-ratio", "0.2"])
    {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id})
    stats = wait_stats(id, &(&1.rejected > 20 and &1.events_delivered > 100))
    assert stats.rejected_by_reason.unknown_event == stats.rejected
  end

  test "a slow handler pushes back to the source; the mailbox stays within credit",
       %{worker_id: id} do
    lg = LoadGen.start!(["--rate", "200000", "--queue-size", "256"])
    test = self()

    :telemetry.attach_many(
      "slow-#{id}",
      Naming.python_events(),
      fn _, _, %{worker_id: w}, _ -> if w == id, do: Process.sleep(1) end,
      nil
    )

    on_exit(fn -> :telemetry.detach("slow-#{id}") end)

    {:ok, _} =
      GrpcStream.register_worker(lg.endpoint, %{worker_id: id},
        credit: 2,
        max_batch: 64,
        window_bytes: 65_536
      )

    memory_before = :erlang.memory(:total)

    {max_queue, max_memory} =
      Enum.reduce(1..40, {0, 0}, fn _, {queue, memory} ->
        Process.sleep(25)
        {:message_queue_len, n} = Process.info(Process.whereis(GrpcStream), :message_queue_len)
        {max(queue, n), max(memory, :erlang.memory(:total))}
      end)

    send(test, :done)
    stats = wait_stats(id, &(&1.python_dropped > 0 and &1.credit_waits > 0))
    # Two batches of credit plus the odd status or call message.
    assert max_queue <= 4, "mailbox reached #{max_queue}"
    # BEAM memory stays flat while the source offers 200,000 events/s to a
    # handler that takes 1 ms each: the excess is dropped at the source.
    growth = max_memory - memory_before
    assert growth < 8 * 1024 * 1024, "BEAM memory grew by #{growth} bytes"
    assert stats.events_delivered < stats.python_emitted
  end

  test "accounting: emitted = delivered + dropped by reason, once the stream settles",
       %{worker_id: id} do
    lg = LoadGen.start!(["--rate", "20000", "--total", "5000", "--invalid-ratio", "0.1"])
    # The load generator ends its stream after --total events and counts anew
    # on a new stream: a long backoff keeps this one stream under test.
    {:ok, _} =
      GrpcStream.register_worker(lg.endpoint, %{worker_id: id},
        backoff_initial_ms: 60_000,
        backoff_max_ms: 60_000
      )

    :ok = GrpcStream.update_sampling(id, 0.5, ["tool.*"])

    stats =
      wait_stats(id, fn s ->
        a = GrpcStream.stats(id) |> elem(1) |> Map.fetch!(:accounting)
        s.python_emitted >= 5_000 and a.unaccounted == 0
      end)

    a = stats.accounting
    assert a.emitted == a.delivered + Enum.sum(Map.values(a.dropped))
    assert a.dropped.rejected > 0, inspect(a)
    assert a.dropped.sampled_out > 0, inspect(a)
  end
end
