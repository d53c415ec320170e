defmodule SnakepitBench.External do
  @moduledoc false
  # The OS processes a benchmark talks to: the workspace's load generator
  # (native/snakepit_loadgen) and real Python workers (priv/python/grpc_server.py).
  # Each is owned by a small process that holds its port and drains its
  # output; `stop/1` kills it by the OS pid it was started with.

  @root Path.expand("../..", __DIR__)

  def root, do: @root
  def loadgen_binary, do: Path.join(@root, "target/release/snakepit_loadgen")

  @doc "The shell-style command line of `exe args`, for the report."
  def command_line(exe, args), do: Enum.map_join([exe | args], " ", &shell_quote/1)

  @doc "Starts the load generator; returns %{endpoint, os_pid, command, owner}."
  def start_loadgen(args) do
    args = ["--listen", "127.0.0.1:0" | args]
    rel = Path.relative_to(loadgen_binary(), @root)
    # exec keeps the OS pid; its per-stream log on stderr is not wanted.
    shell = "exec #{command_line(loadgen_binary(), args)} 2>/dev/null"

    start(:loadgen, "/bin/sh", ["-c", shell], [], "LISTENING ", &String.to_integer/1)
    |> Map.put(:command, command_line(rel, args))
  end

  @doc "A file of priv/python, in the source tree (priv/ of the build links to it)."
  def python_file(rel) do
    source = Path.join([@root, "priv/python", rel])
    if File.exists?(source), do: source, else: Path.join(Snakepit.Python.package_dir(), rel)
  end

  @doc """
  The token of the benchmark's Python workers (one per VM, made on first
  use): they run authenticated, as GRPCWorker's do.
  """
  def token do
    case :persistent_term.get({__MODULE__, :token}, nil) do
      nil ->
        token = Snakepit.Auth.new_token()
        :persistent_term.put({__MODULE__, :token}, token)
        token

      token ->
        token
    end
  end

  @doc """
  Starts a Python worker with `token/0` (`auth: false`: `--no-auth`, the
  token cost's baseline); returns %{endpoint, os_pid, command, owner}.
  """
  def start_python(args \\ [], opts \\ []) do
    script = python_file("grpc_server.py")
    auth? = Keyword.get(opts, :auth, true)
    auth = if auth?, do: "--auth-token-stdin", else: "--no-auth"
    args = [script, "--port", "0", "--sample-interval-ms", "0", "--demo-tools", auth | args]
    stdin = if auth?, do: [Snakepit.Auth.reveal(token()), ?\n]
    opts = [env: Snakepit.Python.env(), stdin: stdin]

    start(:python, Snakepit.Python.executable(), args, opts, "SNAKEPIT_READY ", fn json ->
      [_, port] = Regex.run(~r/"port":\s*(\d+)/, json)
      String.to_integer(port)
    end)
    |> Map.put(
      :command,
      command_line(Path.relative_to(Snakepit.Python.executable(), @root), [
        Path.relative_to(script, @root) | tl(args)
      ])
    )
  end

  @doc "Kills the process (SIGKILL) and its owner."
  def stop(%{os_pid: os_pid, owner: owner}) do
    Snakepit.OSProcess.signal(os_pid, "KILL")
    send(owner, :stop)
    :ok
  end

  defp start(kind, exe, args, opts, ready, port_of) do
    case Snakepit.OSProcess.spawn_owned(exe, args, ready, opts) do
      {:ok, %{os_pid: os_pid, owner: owner, ready: rest}} ->
        %{kind: kind, endpoint: "127.0.0.1:#{port_of.(rest)}", os_pid: os_pid, owner: owner}

      {:error, {:exited, status, lines}} ->
        raise "#{kind} exited #{status} before it was ready:\n#{Enum.join(lines, "\n")}"

      {:error, reason} ->
        raise "#{kind} was not ready: #{inspect(reason)}"
    end
  end

  defp shell_quote(arg) do
    if arg =~ ~r{^[\w@%+=:,./-]+$}, do: arg, else: "'" <> String.replace(arg, "'", "'\\''") <> "'"
  end
end
