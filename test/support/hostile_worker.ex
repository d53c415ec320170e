defmodule Snakepit.Test.HostileWorker do
  @moduledoc false
  # Starts test/support/hostile_worker.py: a real gRPC peer (grpcio) that
  # serves the telemetry RPCs with hostile bytes (see its docstring).

  @doc "Starts one in `mode` with extra `args`; returns %{endpoint, os_pid}. Killed at test exit."
  def start!(mode, args \\ []) do
    peer = open!(mode, args)

    ExUnit.Callbacks.on_exit(fn -> Snakepit.OSProcess.signal(peer.os_pid, "KILL") end)

    peer
  end

  @doc "Starts one (the caller kills it: `bench/support/soak_hostile.ex`)."
  def open!(mode, args \\ []) do
    script = Path.expand("hostile_worker.py", __DIR__)

    started =
      Snakepit.OSProcess.spawn_owned(
        Snakepit.Python.executable(),
        [script, "--mode", mode | args],
        "HOSTILE_READY ",
        env: Snakepit.Python.env(),
        timeout: 30_000
      )

    case started do
      {:ok, %{os_pid: os_pid, ready: p}} -> %{endpoint: "127.0.0.1:#{p}", os_pid: os_pid}
      {:error, reason} -> raise "hostile worker (#{mode}) did not start: #{inspect(reason)}"
    end
  end
end
