defmodule Snakepit.Test.HostileWorker do
  @moduledoc false
  # Starts test/support/hostile_worker.py: a real gRPC peer (grpcio) that
  # serves the telemetry RPCs with hostile bytes (see its docstring).

  @doc "Starts one in `mode` with extra `args`; returns %{endpoint, os_pid}. Killed at test exit."
  def start!(mode, args \\ []) do
    peer = open!(mode, args)

    ExUnit.Callbacks.on_exit(fn ->
      System.cmd("kill", ["-9", "#{peer.os_pid}"], stderr_to_stdout: true)
    end)

    peer
  end

  @doc "Starts one (the caller kills it: `bench/support/soak_hostile.ex`)."
  def open!(mode, args \\ []) do
    script = Path.expand("hostile_worker.py", __DIR__)

    port =
      Port.open({:spawn_executable, Snakepit.Python.executable()}, [
        :binary,
        :exit_status,
        {:line, 1024},
        args: [script, "--mode", mode | args],
        env: Snakepit.Python.port_env()
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    receive do
      {^port, {:data, {:eol, "HOSTILE_READY " <> p}}} ->
        %{endpoint: "127.0.0.1:#{p}", os_pid: os_pid}

      {^port, {:exit_status, status}} ->
        raise "hostile worker (#{mode}) exited #{status}"
    after
      30_000 -> raise "hostile worker (#{mode}) did not start"
    end
  end
end
