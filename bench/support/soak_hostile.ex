defmodule SnakepitBench.SoakHostile do
  @moduledoc false
  # The hostile side of `bench/soak.exs --hostile`: real gRPC peers that
  # send what no worker should (test/support/hostile_worker.py: extreme
  # numbers and totals, garbage, 200,000 metadata keys, 10 MB frames, streams
  # ended at once, idle streams), registered beside the healthy workers, and
  # a loop that sends stray messages and bad calls to the project's
  # processes. The soak then checks that GrpcStream never restarted and the
  # healthy workers' accounting is still exact.

  alias Snakepit.Telemetry.GrpcStream

  @modes [
    {"extreme", []},
    {"garbage", []},
    {"many_keys", ["--keys", "200000", "--interval-ms", "500"]},
    {"huge_frame", ["--interval-ms", "500"]},
    {"flap", []},
    {"idle", []}
  ]

  def ids, do: Enum.map(@modes, fn {mode, _} -> "hostile_#{mode}" end)

  @doc "Starts and registers one peer per mode; returns their OS pids."
  def start_all do
    for {mode, args} <- @modes do
      peer = Snakepit.Test.HostileWorker.open!(mode, args)

      {:ok, _} =
        GrpcStream.register_worker(peer.endpoint, %{worker_id: "hostile_#{mode}"},
          backoff_initial_ms: 50,
          backoff_max_ms: 1_000
        )

      peer.os_pid
    end
  end

  def kill_all(os_pids),
    do: Enum.each(os_pids, &Snakepit.OSProcess.signal(&1, "KILL"))

  @doc "Sends junk to GrpcStream and the workers until `stop?` says so."
  def stray_loop(stop?, seed) do
    :rand.seed(:exsss, seed)
    junk(stop?, 0)
  end

  defp junk(stop?, n) do
    if stop?.() do
      n
    else
      pid = Process.whereis(GrpcStream)

      for msg <- [
            :junk,
            {:snakepit_telemetry_batch, :rand.uniform(100), [:junk]},
            {:snakepit_telemetry_ended, :rand.uniform(100), 42},
            {:DOWN, make_ref(), :process, self(), :forged}
          ],
          do: send(pid, msg)

      GenServer.cast(pid, {:cancel_register, make_ref()})
      {:error, _} = GenServer.call(pid, :bogus)
      {:error, _} = Snakepit.GRPCWorker.info(pid)
      {:error, _} = GrpcStream.register_worker("h\0:1", %{worker_id: "x"})
      {:error, _} = GrpcStream.update_sampling("hostile_idle", 0.5, [nil])
      Process.sleep(20)
      junk(stop?, n + 1)
    end
  end

  @doc "One line per peer: frames, rejections by reason, reconnects."
  def report do
    for id <- ids() do
      {:ok, s} = GrpcStream.stats(id)

      "  #{String.pad_trailing(id, 20)} frames #{s.frames}, delivered #{s.events_delivered}, " <>
        "connects #{s.connects}, rejected #{inspect(s.rejected_by_reason)}"
    end
  end
end
