defmodule Snakepit.Robustness.StrayMessagesTest do
  # Issue 11, class 2: any process can send any message or make any call.
  # Before the fix `send(GrpcStream, :junk)`, `GenServer.call(GrpcStream,
  # :bogus)` and `GRPCWorker.info/1` on the GrpcStream pid each crashed it
  # (every registration lost), and `GRPCWorker.info/1` on a pool supervisor
  # crashed the supervisor.
  use ExUnit.Case, async: false

  alias Snakepit.{GRPCWorker, Pool}
  alias Snakepit.Telemetry.{GrpcStream, PythonCapture}

  defp junk do
    [
      :junk,
      {:snakepit_telemetry_batch, 1, [:junk, {1, 2, 3}, {[:a], :not_a_map, %{}}]},
      {:snakepit_telemetry_batch, 1, :not_a_list},
      {:snakepit_telemetry_batch, :x, [{[:snakepit, :x], %{}, %{}} | :improper]},
      {:snakepit_telemetry_status, 1, :x, 1, 2},
      {:snakepit_telemetry_ended, 1, 42},
      {:snakepit_telemetry_ended, :x, "panic: forged"},
      {:snakepit_telemetry_ended, :x, {:panic, "forged"}},
      {:snakepit_telemetry_ended, 7, :stopped},
      {:snakepit_telemetry_ended, 7, {:panic, :not_text}},
      {:unregister_timeout, :nope},
      {:DOWN, make_ref(), :process, self(), :forged},
      {:EXIT, self(), :forged},
      {:python_capture_exit, self(), 0}
    ]
  end

  @calls [
    :bogus,
    :info,
    {:register, 1, 2, 3},
    {:register, "127.0.0.1:1", %{}, %{}},
    {:register, "127.0.0.1:1", %{worker_id: :atom}, %{credit: "x"}},
    {:unregister, 42}
  ]

  defp pester(pid) do
    for msg <- junk(), do: send(pid, msg)
    for msg <- junk(), do: GenServer.cast(pid, msg)

    for req <- @calls do
      assert {:error, _} = GenServer.call(pid, req)
    end

    assert {:error, :not_a_worker} = GRPCWorker.info(pid)
    assert {:error, :not_a_worker} = GRPCWorker.execute(pid, "ping")
    # Everything above was handled: the process answers, with its state.
    :sys.get_state(pid)
  end

  test "GrpcStream survives stray messages, casts, calls and forged batches" do
    id = "stray#{System.unique_integer([:positive])}"
    on_exit(fn -> GrpcStream.unregister_worker(id) end)
    {:ok, _} = GrpcStream.register_worker("127.0.0.1:1", %{worker_id: id})
    pid = Process.whereis(GrpcStream)

    pester(pid)

    assert Process.whereis(GrpcStream) == pid
    assert {:ok, _} = GrpcStream.stats(id)
    assert GenServer.call(pid, :bogus) == {:error, :unknown_call}
  end

  test "the settings store survives stray messages and bad calls, keeping what it holds" do
    alias Snakepit.Telemetry.Settings
    pid = Process.whereis(Settings)
    :ok = Settings.put({:pool, :stray_pool}, {:toggle, false})
    on_exit(fn -> Settings.replace({:pool, :stray_pool}, []) end)
    pester(pid)

    for {layer, controls} <- [
          {{:pool, :stray_pool}, [:junk]},
          {{:pool, :stray_pool}, [{:toggle, "yes"}]},
          {{:pool, :stray_pool}, [{:sampling, 1, []}]},
          {{:pool, :stray_pool}, :not_a_list},
          {{:pool, :stray_pool}, [{:toggle, true} | :improper]},
          {{:worker, :atom}, [{:toggle, true}]},
          {:nobody, [{:toggle, true}]}
        ] do
      assert {:error, {:invalid_setting, _}} = GenServer.call(pid, {:put, layer, controls})
      assert {:error, {:invalid_setting, _}} = GenServer.call(pid, {:replace, layer, controls})
    end

    assert Process.whereis(Settings) == pid
    assert Settings.layer({:pool, :stray_pool}).toggle == {:toggle, false}
  end

  test "a pool and its workers survive stray messages, calls and forged exits" do
    # Under a supervisor, as in an application (a GenServer ends on an
    # {:EXIT, parent, _} message, forged or not: OTP's rule).
    pool = start_supervised!({Pool, name: :stray_pool, size: 1, status_interval: nil})
    [worker] = Pool.workers(:stray_pool)

    assert {:error, :not_a_worker} = GRPCWorker.info(pool)
    assert {:error, :not_a_worker} = GRPCWorker.execute(pool, "ping")

    pester(pool)
    # Forged news of its worker: a monitor, not a message, says a worker died.
    send(pool, {:EXIT, worker, :forged})
    send(pool, {:DOWN, make_ref(), :process, worker, :forged})
    send(pool, {:snakepit_worker_ready, worker, "stray_pool_1"})
    send(pool, {:restart, "stray_pool_1"})
    send(pool, {:queue_timeout, make_ref()})

    for bad <- [{:checkout, -1, nil}, {:checkout, :x, nil}, {:checkin, :x}] do
      assert {:error, _} = GenServer.call(pool, bad)
    end

    assert %{busy_workers: 0, available_workers: 1, total_workers: 1} = Pool.status(:stray_pool)

    for msg <- junk(), do: send(worker, msg)
    for msg <- junk(), do: GenServer.cast(worker, msg)
    for req <- @calls -- [:info], do: assert({:error, _} = GenServer.call(worker, req))

    assert Process.alive?(pool)
    assert Pool.workers(:stray_pool) == [worker]
    assert {:ok, %{"pong" => _}} = GRPCWorker.execute(worker, "ping")
  end

  test "the cluster's :pg scope, crashed by a stray message, comes back with every membership" do
    alias Snakepit.Telemetry.Cluster
    import Snakepit.Test.Eventually
    {:ok, fake} = Snakepit.Test.FakeWorker.start(worker_id: "stray-pg")
    on_exit(fn -> Snakepit.Test.FakeWorker.stop(fake) end)
    scope = Process.whereis(Cluster.scope())
    stream = Process.whereis(GrpcStream)
    assert stream in :pg.get_members(Cluster.scope(), {:worker, "stray-pg"})

    # OTP's pg has no catch-all clause: a stray message ends it.
    send(scope, :junk)
    eventually(fn -> Process.whereis(Cluster.scope()) not in [nil, scope] end)
    eventually(fn -> stream in :pg.get_members(Cluster.scope(), {:worker, "stray-pg"}) end)
    assert stream in :pg.get_members(Cluster.scope(), :grpc_streams)
    assert {:ok, _} = GrpcStream.stats("stray-pg")

    for msg <- junk(), do: send(Cluster.Directory, msg)
    assert {:error, :unknown_call} = GenServer.call(Cluster.Directory, :bogus)
  end

  test "functions that take a pid refuse anything that is not a worker" do
    for bad <- [:atom, "pid", 42, nil, self(), spawn(fn -> :ok end), make_ref()] do
      assert {:error, _} = GRPCWorker.info(bad)
      assert {:error, _} = GRPCWorker.execute(bad, "ping")
    end
  end

  test "PythonCapture survives stray messages and calls" do
    # Under a supervisor: an {:EXIT, parent, _} message is a parent's exit to
    # any GenServer, so the forged one below must not come from the parent.
    capture =
      start_supervised!(
        {PythonCapture, executable: "/bin/sleep", args: ["30"], context: %{worker_id: "s"}}
      )

    pester(capture)
    assert Process.alive?(capture)
  end
end
