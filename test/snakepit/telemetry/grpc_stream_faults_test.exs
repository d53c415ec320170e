defmodule Snakepit.Telemetry.GrpcStreamFaultsTest do
  use ExUnit.Case, async: false

  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.{GrpcStream, Native}
  alias Snakepit.Test.{LoadGen, PythonWorker}

  import Snakepit.Test.Eventually, only: [eventually: 1]

  test "a worker that accepts TCP but never answers: timeouts, backoff, other streams unaffected" do
    # A socket that accepts connections and never speaks HTTP/2.
    {:ok, listen} = :gen_tcp.listen(0, [:binary, active: false, reuseaddr: true])
    {:ok, port} = :inet.port(listen)

    acceptor =
      spawn_link(fn ->
        Stream.repeatedly(fn -> :gen_tcp.accept(listen) end)
        |> Enum.take_while(&match?({:ok, _}, &1))
      end)

    on_exit(fn -> Process.exit(acceptor, :kill) end)
    mute = "mute#{System.unique_integer([:positive])}"
    live = "live#{System.unique_integer([:positive])}"
    on_exit(fn -> Enum.each([mute, live], &GrpcStream.unregister_worker/1) end)

    {:ok, _} =
      GrpcStream.register_worker("127.0.0.1:#{port}", %{worker_id: mute},
        connect_timeout_ms: 200,
        open_timeout_ms: 200,
        backoff_initial_ms: 50,
        backoff_max_ms: 100
      )

    lg = LoadGen.start!(["--rate", "1000"])
    {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: live})

    eventually(fn ->
      {:ok, s} = GrpcStream.stats(mute)
      s.last_error != nil and s.last_error =~ "timed out"
    end)

    {:ok, s} = GrpcStream.stats(mute)
    assert s.connects == 0 and s.state in [:connecting, :backoff]

    eventually(fn ->
      match?({:ok, %{events_delivered: n}} when n > 200, GrpcStream.stats(live))
    end)

    # Unregistering a stream stuck in connect returns promptly.
    {time, :ok} = :timer.tc(fn -> GrpcStream.unregister_worker(mute) end)
    assert time < 1_000_000
  end

  test "a handle collected by the BEAM ends its task and its connection" do
    w = PythonWorker.start!()
    {:ok, channel} = Client.connect(w.endpoint)
    state = fn -> elem(Client.execute_tool(channel, "telemetry_state", %{}), 1) end
    test = self()

    # A process that owns the only reference to the handle, then exits.
    owner =
      spawn(fn ->
        {:ok, {_id, _handle}} =
          Native.stream_start(%{endpoint: w.endpoint, worker_id: "gc"}, self())

        send(test, :started)
        receive do: (:exit -> :ok)
      end)

    assert_receive :started
    eventually(fn -> state.()["active_streams"] == 1 end)
    send(owner, :exit)
    # The handle is freed with the process heap; the task sees its control
    # channel close and ends the stream.
    eventually(fn -> state.()["active_streams"] == 0 end)
  end

  @tag timeout: 60_000
  test "GrpcStream killed under load: old tasks stop within a second, workers register again" do
    start_supervised!(
      {Snakepit.Pool,
       name: :faults, size: 1, status_interval: nil, worker_args: ["--sample-interval-ms", "0"]}
    )

    [worker] = Snakepit.Pool.workers(:faults)
    state = fn -> elem(Snakepit.GRPCWorker.execute(worker, "telemetry_state", %{}), 1) end
    eventually(fn -> state.()["active_streams"] == 1 end)

    load =
      Task.async(fn ->
        Snakepit.GRPCWorker.execute(worker, "emit_events", %{count: 200_000, interval_ms: 0.01},
          timeout: 30_000
        )
      end)

    Process.sleep(300)
    old = Process.whereis(GrpcStream)
    Process.exit(old, :kill)
    killed_at = System.monotonic_time(:millisecond)

    # The old task ends within a second (its handle died with the process)...
    eventually(fn ->
      Snakepit.Telemetry.Native.streams_running() == length(GrpcStream.list_streams())
    end)

    assert System.monotonic_time(:millisecond) - killed_at < 1_000
    # ...and the GRPCWorker registers again.
    eventually(fn -> state.()["streams_opened"] >= 2 end)
    eventually(fn -> Enum.any?(GrpcStream.list_streams(), &(&1.worker_id == "faults_1")) end)
    Task.await(load, 40_000)
  end
end
