defmodule Snakepit.Test.LoadGen do
  @moduledoc false
  # Starts the workspace's load generator (native/snakepit_loadgen), a gRPC
  # server speaking the worker protocol, built by scripts/test.sh.

  def binary, do: Path.expand("../../target/release/snakepit_loadgen", __DIR__)

  @doc "Starts it with `args`; returns %{endpoint, port, os_pid}. Stopped at test exit."
  def start!(args \\ []) do
    unless File.exists?(binary()) do
      {_, 0} =
        System.cmd("cargo", ["build", "--release", "-p", "snakepit_loadgen"],
          stderr_to_stdout: true
        )
    end

    # exec keeps the OS pid; its per-stream log on stderr is not needed here.
    command = Enum.map_join([binary(), "--listen", "127.0.0.1:0" | args], " ", &shell_quote/1)

    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        :exit_status,
        {:line, 1024},
        args: ["-c", "exec #{command} 2>/dev/null"]
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    ExUnit.Callbacks.on_exit(fn ->
      System.cmd("kill", ["-9", "#{os_pid}"], stderr_to_stdout: true)
    end)

    receive do
      {^port, {:data, {:eol, "LISTENING " <> p}}} ->
        %{endpoint: "127.0.0.1:#{p}", port: String.to_integer(p), os_pid: os_pid}

      {^port, {:exit_status, status}} ->
        raise "loadgen exited #{status}"
    after
      10_000 -> raise "loadgen did not start"
    end
  end

  defp shell_quote(arg), do: "'" <> String.replace(arg, "'", "'\\''") <> "'"
end
