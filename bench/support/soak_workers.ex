defmodule SnakepitBench.SoakWorkers do
  @moduledoc false
  # The Python workers of bench/soak.exs: each on a fixed port (picked once),
  # so a killed worker comes back at the same address and its registered
  # stream reconnects. The live OS pids are kept in a public ETS table, so
  # `kill_all/0` finds them whatever process runs it.

  @table :soak_workers
  @ready "SNAKEPIT_READY "

  def init, do: :ets.new(@table, [:named_table, :public, :set])

  @doc "`n` distinct free TCP ports (all held open while picking)."
  def free_ports(n) do
    sockets = for _ <- 1..n, do: elem(:gen_tcp.listen(0, reuseaddr: true), 1)
    ports = Enum.map(sockets, &elem(:inet.port(&1), 1))
    Enum.each(sockets, &:gen_tcp.close/1)
    ports
  end

  def script, do: Path.join(Snakepit.Python.package_dir(), "grpc_server.py")

  def args(port) do
    ["--port", to_string(port), "--sample-interval-ms", "0", "--demo-tools", "--auth-token-stdin"]
  end

  @doc "Starts worker `i` on `port`; waits for its ready line (20 s at most)."
  def start(i, port) do
    started =
      Snakepit.OSProcess.spawn_owned(
        Snakepit.Python.executable(),
        [script() | args(port)],
        @ready,
        env: Snakepit.Python.env(),
        stdin: [Snakepit.Auth.reveal(SnakepitBench.External.token()), ?\n],
        timeout: 20_000
      )

    case started do
      {:ok, %{os_pid: os_pid, owner: owner}} ->
        :ets.insert(@table, {i, %{port: port, os_pid: os_pid, owner: owner}})
        :ok

      {:error, {:exited, status, lines}} ->
        {:error, {:exited, status, Enum.join(lines, "\n")}}

      {:error, reason} ->
        {:error, reason}
    end
  end

  def endpoint(i), do: "127.0.0.1:#{:ets.lookup_element(@table, i, 2).port}"

  @doc "Starts worker `i` again on its port."
  def restart(i) do
    [{^i, %{port: port}}] = :ets.lookup(@table, i)
    start(i, port)
  end

  @doc "kill -9 worker `i`; returns once its port reported the exit."
  def kill(i) do
    [{^i, %{os_pid: os_pid, owner: owner}}] = :ets.lookup(@table, i)
    ref = Process.monitor(owner)
    Snakepit.OSProcess.signal(os_pid, "KILL")

    receive do
      {:DOWN, ^ref, _, _, _} -> :ok
    after
      5_000 -> Process.exit(owner, :kill)
    end
  end

  @doc "Kills every worker still running (at exit, also after a failure)."
  def kill_all do
    if :ets.whereis(@table) != :undefined do
      for {_, %{os_pid: os_pid}} <- :ets.tab2list(@table) do
        Snakepit.OSProcess.signal(os_pid, "KILL")
      end
    end

    :ok
  end

  @doc "The BEAM's resident set size in bytes (Linux), or nil."
  def beam_rss do
    case File.read("/proc/#{System.pid()}/status") do
      {:ok, text} ->
        case Regex.run(~r/VmRSS:\s+(\d+) kB/, text) do
          [_, kb] -> String.to_integer(kb) * 1024
          _ -> nil
        end

      _ ->
        nil
    end
  end
end
