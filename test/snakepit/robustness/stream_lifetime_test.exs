defmodule Snakepit.Robustness.StreamLifetimeTest do
  # Issue 11, classes 3 and 4: a stream lives exactly as long as its
  # registration. Before the fix, (3) a GrpcStream that exited with a reason
  # holding its state left 5 of 5 Rust tasks running (the handles stayed
  # reachable from the exit reason in the supervisor's heap), and (4) a
  # worker restarted by its pool on a new port kept streaming from the old
  # one (`{:error, :already_registered}` was taken as success): 0 events.
  use ExUnit.Case, async: false

  alias Snakepit.{GRPCWorker, Pool}
  alias Snakepit.Telemetry.{GrpcStream, Native}
  alias Snakepit.Test.HostileWorker

  import Snakepit.Test.Eventually

  @result_size [:snakepit, :python, :tool, :result_size]

  test "GrpcStream exiting with any reason ends every Rust task within a second" do
    # Idle streams: a task that has events to send finds its owner gone on
    # the next send; one with nothing to send must be ended all the same.
    lg = HostileWorker.start!("idle")
    ids = for i <- 1..5, do: "life#{i}_#{System.unique_integer([:positive])}"
    for id <- ids, do: {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id})
    eventually(fn -> Native.streams_running() >= 5 end)

    for kind <- [:holding_state, :shutdown] do
      old = Process.whereis(GrpcStream)
      # An exit reason that holds the state and the registrations, as a
      # crash report's stack trace (the callback's arguments) would.
      reason =
        if kind == :shutdown,
          do: :shutdown,
          else: {:crash, :sys.get_state(old), :ets.tab2list(GrpcStream.Registry)}

      Process.exit(old, reason)
      exited_at = System.monotonic_time(:millisecond)

      eventually(fn -> Native.streams_running() == 0 end,
        tries: 100,
        interval: 10,
        message: fn _ -> "#{Native.streams_running()} stream tasks still running" end
      )

      assert System.monotonic_time(:millisecond) - exited_at < 1_000

      eventually(fn ->
        is_pid(Process.whereis(GrpcStream)) and Process.whereis(GrpcStream) != old
      end)

      for id <- ids, do: {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id})
      eventually(fn -> Native.streams_running() == 5 end)
    end

    Enum.each(ids, &GrpcStream.unregister_worker/1)
  end

  @tag timeout: 120_000
  test "a worker killed brutally and restarted by its pool streams again from its new port" do
    ref = :telemetry_test.attach_event_handlers(self(), [@result_size])
    on_exit(fn -> :telemetry.detach(ref) end)
    {:ok, _} = Pool.start_link(name: :restarts, size: 1, status_interval: nil)
    on_exit(fn -> Pool.stop(:restarts) end)

    for round <- 1..3 do
      [worker] = Pool.workers(:restarts)
      {:ok, info} = GRPCWorker.info(worker)
      assert [%{endpoint: endpoint}] = streams("restarts_1")
      assert endpoint == info.endpoint

      {:ok, _} =
        GRPCWorker.execute(worker, "emit_events", %{count: 5, metadata: %{round: "#{round}"}})

      for _ <- 1..5 do
        assert_receive {@result_size, _, _, %{:worker_id => "restarts_1", "round" => r}}, 10_000
        assert r == "#{round}"
      end

      Process.exit(worker, :kill)

      eventually(fn ->
        match?([w] when w != worker, Pool.workers(:restarts)) and
          match?([%{state: :open}], streams("restarts_1")) and
          hd(streams("restarts_1")).endpoint != endpoint
      end)
    end
  end

  defp streams(id), do: Enum.filter(GrpcStream.list_streams(), &(&1.worker_id == id))
end
