defmodule Snakepit.Test.LoadGen do
  @moduledoc false
  # Starts the workspace's load generator (native/snakepit_loadgen), a gRPC
  # server speaking the worker protocol, built by scripts/test.sh.

  def binary, do: Path.expand("../../target/release/snakepit_loadgen", __DIR__)

  @doc """
  Starts it with `args`; returns %{endpoint, port, os_pid}. Stopped at test
  exit. `port: p` listens on that port (to restart a peer where it was).
  """
  def start!(args \\ [], opts \\ []) do
    unless File.exists?(binary()) do
      {_, 0} =
        System.cmd("cargo", ["build", "--release", "-p", "snakepit_loadgen"],
          stderr_to_stdout: true
        )
    end

    # exec keeps the OS pid; its per-stream log on stderr is not needed here.
    command =
      Enum.map_join(
        [binary(), "--listen", "127.0.0.1:#{Keyword.get(opts, :port, 0)}" | args],
        " ",
        &shell_quote/1
      )

    started =
      Snakepit.OSProcess.spawn_owned(
        "/bin/sh",
        ["-c", "exec #{command} 2>/dev/null"],
        "LISTENING ",
        timeout: 10_000
      )

    case started do
      {:ok, %{os_pid: os_pid, ready: p}} ->
        ExUnit.Callbacks.on_exit(fn -> Snakepit.OSProcess.signal(os_pid, "KILL") end)
        %{endpoint: "127.0.0.1:#{p}", port: String.to_integer(p), os_pid: os_pid}

      {:error, reason} ->
        raise "loadgen did not start: #{inspect(reason)}"
    end
  end

  @doc """
  Kills it at once (SIGKILL), as a crashed worker, and returns once the
  process is gone: until then its listening socket holds the port, and a
  peer restarted on that port (`start!(args, port: p)`) could not bind it.
  """
  def kill(%{os_pid: os_pid}) do
    Snakepit.OSProcess.signal(os_pid, "KILL")
    gone(os_pid, 200)
  end

  defp gone(_os_pid, 0), do: raise("the load generator did not exit after SIGKILL")

  defp gone(os_pid, tries) do
    if Snakepit.OSProcess.signal(os_pid, "0") do
      Process.sleep(10)
      gone(os_pid, tries - 1)
    else
      :ok
    end
  end

  defp shell_quote(arg), do: "'" <> String.replace(arg, "'", "'\\''") <> "'"
end
