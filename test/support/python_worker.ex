defmodule Snakepit.Test.PythonWorker do
  @moduledoc false
  # Starts a real Python worker (priv/python/grpc_server.py) for tests. A
  # small process owns the port, so the test's mailbox only sees telemetry.

  @ready "SNAKEPIT_READY "

  @doc """
  Starts a worker with a fresh token, as GRPCWorker does; returns
  %{endpoint, port, os_pid, owner, token}. Killed at test exit.
  """
  def start!(opts \\ []) do
    port_number = Keyword.get(opts, :port, 0)
    # No resource samples unless asked: tests count events exactly.
    extra = Keyword.get(opts, :args, ["--sample-interval-ms", "0"])
    token = Keyword.get_lazy(opts, :token, &Snakepit.Auth.new_token/0)
    args = ["--port", to_string(port_number), "--demo-tools", "--auth-token-stdin" | extra]

    log = fn line ->
      if System.get_env("SNAKEPIT_TEST_WORKER_LOG"), do: IO.puts("[py] #{line}")
    end

    started =
      Snakepit.OSProcess.spawn_owned(
        Snakepit.Python.executable(),
        [Path.join(Snakepit.Python.package_dir(), "grpc_server.py") | args],
        @ready,
        env: Snakepit.Python.env(opts[:env] || []),
        stdin: [Snakepit.Auth.reveal(token), ?\n],
        timeout: 15_000,
        on_line: log
      )

    case started do
      {:ok, %{os_pid: os_pid, owner: owner, ready: json}} ->
        [_, p] = Regex.run(~r/"port":\s*(\d+)/, json)
        p = String.to_integer(p)
        info = %{endpoint: "127.0.0.1:#{p}", port: p, os_pid: os_pid, owner: owner, token: token}
        ExUnit.Callbacks.on_exit(fn -> kill(info) end)
        info

      {:error, {:exited, status, lines}} ->
        raise "python worker exited #{status} before ready:\n#{Enum.join(lines, "\n")}"

      {:error, reason} ->
        raise "python worker not ready: #{inspect(reason)}"
    end
  end

  @doc "kill -9 the worker process."
  def kill(%{os_pid: os_pid, owner: owner}) do
    Snakepit.OSProcess.signal(os_pid, "KILL")
    send(owner, :stop)
    :ok
  end

  @doc "True while the OS process exists."
  def alive?(%{os_pid: os_pid}), do: Snakepit.OSProcess.signal(os_pid, "0")
end
