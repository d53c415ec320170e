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
    test = self()
    port_number = Keyword.get(opts, :port, 0)
    # No resource samples unless asked: tests count events exactly.
    extra = Keyword.get(opts, :args, ["--sample-interval-ms", "0"])
    token = Keyword.get_lazy(opts, :token, &Snakepit.Auth.new_token/0)
    args = ["--port", to_string(port_number), "--demo-tools", "--auth-token-stdin" | extra]

    owner =
      spawn(fn ->
        port =
          Port.open({:spawn_executable, Snakepit.Python.executable()}, [
            :binary,
            :exit_status,
            :stderr_to_stdout,
            {:line, 65_536},
            args: [Path.join(Snakepit.Python.package_dir(), "grpc_server.py") | args],
            env: Snakepit.Python.port_env(opts[:env] || [])
          ])

        Port.command(port, [Snakepit.Auth.reveal(token), ?\n])
        {:os_pid, os_pid} = Port.info(port, :os_pid)
        loop(port, test, os_pid, false, token)
      end)

    receive do
      {:worker_ready, ^owner, info} ->
        ExUnit.Callbacks.on_exit(fn -> kill(info) end)
        info

      {:worker_exit, ^owner, status, lines} ->
        raise "python worker exited #{status} before ready:\n#{Enum.join(lines, "\n")}"
    after
      15_000 -> raise "python worker not ready within 15 s"
    end
  end

  @doc "kill -9 the worker process."
  def kill(%{os_pid: os_pid, owner: owner}) do
    System.cmd("kill", ["-9", to_string(os_pid)], stderr_to_stdout: true)
    send(owner, :stop)
    :ok
  end

  @doc "True while the OS process exists."
  def alive?(%{os_pid: os_pid}) do
    {_, status} = System.cmd("kill", ["-0", to_string(os_pid)], stderr_to_stdout: true)
    status == 0
  end

  defp loop(port, test, os_pid, ready, token, lines \\ []) do
    receive do
      {^port, {:data, {:eol, @ready <> json}}} when not ready ->
        [_, p] = Regex.run(~r/"port":\s*(\d+)/, json)
        p = String.to_integer(p)
        info = %{endpoint: "127.0.0.1:#{p}", port: p, os_pid: os_pid, owner: self(), token: token}
        send(test, {:worker_ready, self(), info})
        loop(port, test, os_pid, true, token, lines)

      {^port, {:data, {_, line}}} ->
        if System.get_env("SNAKEPIT_TEST_WORKER_LOG"), do: IO.puts("[py #{os_pid}] #{line}")
        loop(port, test, os_pid, ready, token, Enum.take([line | lines], 50))

      {^port, {:exit_status, status}} ->
        unless ready, do: send(test, {:worker_exit, self(), status, Enum.reverse(lines)})

      :stop ->
        :ok
    end
  end
end
