defmodule Snakepit.OSProcess do
  @moduledoc """
  One OS process behind a port, the way every part of Snakepit runs one
  (`GRPCWorker`, `PythonCapture`, the test and bench helpers): spawned with
  its output (stdout and stderr) in line mode, whole lines rebuilt from the
  port's pieces with a bound, a start-up line awaited, and a graceful then
  brutal stop.

      proc = OSProcess.open(exe, args, env: [{"NAME", "value"}], stdin: "first line\\n")
      {:ok, "{...}", proc} = OSProcess.await_line(proc, "READY ", 15_000, &IO.puts/1)
      # in the owner: handle_info({port, {:data, data}}, ...) -> OSProcess.feed(proc, data)
      :ok = OSProcess.stop(proc, 2_000)

  The owner receives the port's messages (`{port, {:data, _}}`,
  `{port, {:exit_status, status}}`) as with any port.
  """

  @enforce_keys [:port, :os_pid, :max_line]
  defstruct [:port, :os_pid, :max_line, partial: [], size: 0]

  @type t :: %__MODULE__{
          port: port,
          os_pid: pos_integer | nil,
          max_line: pos_integer,
          partial: iodata,
          size: non_neg_integer
        }

  @type fed :: {:line, binary, t} | {:too_long, t} | {:more, t}

  @default_max_line 65_536

  @doc """
  Spawns `exe` with `args`. Options: `:env` (`[{name, value}]`, strings or
  charlists), `:max_line` (bytes, default #{@default_max_line}: a longer line is
  reported as too long, never held whole), `:stdin` (iodata written first,
  e.g. a secret that must not be on the command line).
  """
  @spec open(Path.t(), [String.t()], keyword) :: t
  def open(exe, args, opts \\ []) do
    max_line = Keyword.get(opts, :max_line, @default_max_line)
    env = for {k, v} <- Keyword.get(opts, :env, []), do: {to_charlist(k), to_charlist(v)}

    port =
      Port.open({:spawn_executable, exe}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, max_line},
        args: args,
        env: env
      ])

    # A process that is already gone has closed its port: no pid to signal.
    os_pid =
      case Port.info(port, :os_pid) do
        {:os_pid, pid} -> pid
        nil -> nil
      end

    if stdin = opts[:stdin], do: write(port, stdin)
    %__MODULE__{port: port, os_pid: os_pid, max_line: max_line}
  end

  @doc """
  `open/3` that answers instead of raising: `{:error, {:spawn_failed, exe,
  reason}}` when the program cannot be started (`:enoent`: not found,
  `:eacces`: not executable).
  """
  @spec start(Path.t(), [String.t()], keyword) :: {:ok, t} | {:error, term}
  def start(exe, args, opts \\ []) do
    {:ok, open(exe, args, opts)}
  rescue
    e in ErlangError -> {:error, {:spawn_failed, exe, e.original}}
    e in ArgumentError -> {:error, {:spawn_failed, exe, Exception.message(e)}}
  end

  @doc """
  Feeds one `{:eol, chunk}` / `{:noeol, chunk}` of the port: `{:line, line,
  proc}` when a line is complete, `{:too_long, proc}` when a line over
  `max_line` ended (its pieces were dropped as they came), `{:more, proc}`
  while a long line is still arriving.
  """
  @spec feed(t, {:eol | :noeol, binary}) :: fed
  def feed(%__MODULE__{partial: partial, size: size} = proc, {:eol, chunk}) do
    size = size + byte_size(chunk)
    proc = %{proc | partial: [], size: 0}

    cond do
      size > proc.max_line -> {:too_long, proc}
      partial == [] -> {:line, chunk, proc}
      true -> {:line, IO.iodata_to_binary([partial, chunk]), proc}
    end
  end

  def feed(%__MODULE__{} = proc, {:noeol, chunk}) do
    size = proc.size + byte_size(chunk)
    partial = if size > proc.max_line, do: [], else: [proc.partial, chunk]
    {:more, %{proc | partial: partial, size: size}}
  end

  @doc """
  Waits for a line starting with `prefix`; other lines go to `on_line`.
  Returns `{:ok, rest_of_that_line, proc}`, `{:exit, status, proc}` when the
  process ended first, or `{:timeout, proc}`. Runs in the port's owner.
  """
  @spec await_line(t, binary, timeout, (binary -> any)) ::
          {:ok, binary, t} | {:exit, integer, t} | {:timeout, t}
  def await_line(%__MODULE__{} = proc, prefix, timeout, on_line) do
    each = fn line, nil ->
      on_line.(line)
      nil
    end

    case await_line(proc, prefix, timeout, nil, each) do
      {:ok, rest, proc, _} -> {:ok, rest, proc}
      {:exit, status, proc, _} -> {:exit, status, proc}
      {:timeout, proc, _} -> {:timeout, proc}
    end
  end

  @doc """
  As `await_line/4`, folding the other lines into `acc` with `fun.(line,
  acc)`; every result carries the final `acc`.
  """
  @spec await_line(t, binary, timeout, acc, (binary, acc -> acc)) ::
          {:ok, binary, t, acc} | {:exit, integer, t, acc} | {:timeout, t, acc}
        when acc: term
  def await_line(%__MODULE__{port: port} = proc, prefix, timeout, acc, fun) do
    deadline = System.monotonic_time(:millisecond) + timeout
    await(proc, port, prefix, deadline, acc, fun)
  end

  defp await(proc, port, prefix, deadline, acc, fun) do
    left = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^port, {:data, data}} ->
        case feed(proc, data) do
          {:line, line, proc} ->
            case line do
              <<^prefix::binary-size(byte_size(prefix)), rest::binary>> ->
                {:ok, rest, proc, acc}

              _ ->
                await(proc, port, prefix, deadline, fun.(line, acc), fun)
            end

          {_, proc} ->
            await(proc, port, prefix, deadline, acc, fun)
        end

      {^port, {:exit_status, status}} ->
        {:exit, status, proc, acc}
    after
      left -> {:timeout, proc, acc}
    end
  end

  @doc """
  Starts the process under a small owner process (the caller's mailbox then
  sees none of its output) and waits for its line starting with `ready`.
  Returns `{:ok, %{os_pid, owner, ready}}` (`ready`: the rest of that line)
  or `{:error, {:exited, status, last_lines}}` / `{:error, :timeout}` (the
  process is killed). The owner drains the output (each line to `:on_line`,
  if given) until the process exits or it is sent `:stop`. Options as
  `open/3`, plus `:timeout` (ms, default 20,000) and `:on_line`.
  """
  @spec spawn_owned(Path.t(), [String.t()], binary, keyword) ::
          {:ok, %{os_pid: pos_integer, owner: pid, ready: binary}} | {:error, term}
  def spawn_owned(exe, args, ready, opts \\ []) do
    caller = self()
    timeout = Keyword.get(opts, :timeout, 20_000)
    on_line = Keyword.get(opts, :on_line, fn _ -> :ok end)

    owner =
      spawn(fn ->
        # The last lines before the ready one, for the error if it never comes.
        keep = fn line, lines -> Enum.take([line | lines], 50) end

        case spawn_and_await(exe, args, opts, ready, timeout, keep) do
          {:ok, rest, proc, _} ->
            send(caller, {:ready, self(), proc.os_pid, rest})
            drain(proc, on_line)

          {:exit, status, _, lines} ->
            send(caller, {:exited, self(), status, Enum.reverse(lines)})

          {:timeout, proc, _} ->
            signal(proc.os_pid, "KILL")
            send(caller, {:timed_out, self()})

          {:spawn_failed, reason} ->
            send(caller, {:spawn_failed, self(), reason})
        end
      end)

    # The owner may die before it answers (a program that cannot be spawned).
    monitor = Process.monitor(owner)

    result =
      receive do
        {:ready, ^owner, os_pid, rest} -> {:ok, %{os_pid: os_pid, owner: owner, ready: rest}}
        {:exited, ^owner, status, lines} -> {:error, {:exited, status, lines}}
        {:timed_out, ^owner} -> {:error, :timeout}
        {:spawn_failed, ^owner, reason} -> {:error, {:spawn_failed, reason}}
        {:DOWN, ^monitor, :process, _, reason} -> {:error, {:spawn_failed, reason}}
      end

    Process.demonitor(monitor, [:flush])
    result
  end

  # A program that cannot be spawned (missing, not executable) is an answer,
  # not a crash of the owner.
  defp spawn_and_await(exe, args, opts, ready, timeout, keep) do
    case start(exe, args, opts) do
      {:ok, proc} -> await_line(proc, ready, timeout, [], keep)
      {:error, {:spawn_failed, _exe, reason}} -> {:spawn_failed, reason}
    end
  end

  defp drain(%__MODULE__{port: port} = proc, on_line) do
    receive do
      {^port, {:data, data}} ->
        case feed(proc, data) do
          {:line, line, proc} ->
            on_line.(line)
            drain(proc, on_line)

          {_, proc} ->
            drain(proc, on_line)
        end

      {^port, {:exit_status, _}} ->
        :ok

      :stop ->
        :ok
    end
  end

  @doc """
  Stops the process: SIGTERM, then SIGKILL if it has not exited within
  `grace` ms; the port is closed. Runs in the port's owner (it waits for the
  port's `:exit_status`).
  """
  @spec stop(t, non_neg_integer) :: :ok
  def stop(%__MODULE__{port: port, os_pid: os_pid}, grace) do
    signal(os_pid, "TERM")

    receive do
      {^port, {:exit_status, _}} -> :ok
    after
      grace -> signal(os_pid, "KILL")
    end

    close(port)
  end

  # Not "close if open": the port closes by itself when the killed process's
  # exit status arrives, which can fall between such a check and the close
  # (seen: ArgumentError from port_close in a run under a busy core).
  defp close(port) do
    Port.close(port)
    :ok
  rescue
    ArgumentError -> :ok
  end

  # The process may be gone already (its port closed with it).
  defp write(port, data) do
    Port.command(port, data)
  rescue
    ArgumentError -> :closed
  end

  @doc "Sends `signal` (`\"TERM\"`, `\"KILL\"`, `\"0\"` to probe) to an OS pid; true if delivered."
  @spec signal(pos_integer | nil, String.t()) :: boolean
  def signal(nil, _signal), do: false

  def signal(os_pid, signal) when is_integer(os_pid) and os_pid > 0 do
    {_, status} =
      System.cmd("kill", ["-#{signal}", Integer.to_string(os_pid)], stderr_to_stdout: true)

    status == 0
  end
end
