defmodule Snakepit.Telemetry.PythonCapture do
  @moduledoc """
  The stderr fallback: turns a Python worker's output lines into telemetry.

  A worker using the stderr backend (`PYTHON_SNAKEPIT_TELEMETRY=stderr`)
  writes one `TELEMETRY:{json}` line per event. Each such line is parsed and
  validated in Rust (`serde_json`, the same validation as the gRPC path) and
  becomes a `:telemetry.execute/3` call, with metadata enriched by the
  worker's context (`node`, `worker_id`, `pool_name`, `python_pid`, ...).
  Other lines go to `Logger`, tagged with the worker id. Malformed telemetry
  lines are counted by reason (see `stats/0`) and logged at debug level; they
  never crash anything.

  Use `start_link/1` to run a Python program and capture its output: its
  lines are parsed off the schedulers, on the Rust thread of
  `Snakepit.Telemetry.StderrIngest` (as `GRPCWorker` does with its worker's
  output). `handle_line/2` handles one line at once, in the caller (lines
  over 8 KiB on a dirty scheduler).
  """

  require Logger

  alias Snakepit.Telemetry.{Catalog, Native, SafeMetadata}

  @max_line Catalog.limits().max_stderr_line_bytes
  # Counter slots: events, log lines, then one per rejection reason.
  # The catalog's list (two of them, `malformed` and `frame_too_large`, occur
  # on the gRPC path only).
  @reasons Catalog.rejection_reasons()
  # Lines dropped by StderrIngest: its queue full, or no credit left.
  @drops [:queue_full, :backlog_full]
  @slots [:events, :log_lines | @drops ++ @reasons]
  @counters_key {__MODULE__, :counters}

  @type verdict :: :event | :log | {:malformed, atom} | :ignored

  ## Line handling

  @doc """
  Handles one output line of a worker (without its line ending).

  Returns `:event` when it emitted a telemetry event, `:log` when the line
  went to Logger, `{:malformed, reason}` when a telemetry line was rejected,
  `{:error, reason}` when `line` is not a binary or `context` neither a map
  nor a keyword list.
  """
  @spec handle_line(binary, SafeMetadata.context() | keyword) :: verdict | {:error, term}
  def handle_line(line, context) when is_binary(line) do
    with {:ok, context} <- context(context), do: handle_valid_line(line, context)
  end

  def handle_line(_line, _context), do: {:error, :invalid_line}

  defp context(context) when is_map(context), do: {:ok, context}

  defp context(context) when is_list(context) do
    if Keyword.keyword?(context), do: {:ok, Map.new(context)}, else: {:error, :invalid_context}
  end

  defp context(_), do: {:error, :invalid_context}

  defp handle_valid_line(line, context) do
    case parse(line) do
      {:ok, event, measurements, metadata} ->
        handle_item({:event, event, measurements, metadata}, context)

      :not_telemetry ->
        handle_item({:log, line}, context)

      {:error, {reason, message}} ->
        handle_item({:malformed, reason, message}, context)
    end
  end

  @doc false
  # One parsed line (from handle_line/2 or a StderrIngest batch): an event,
  # a log line or a counted rejection.
  @spec handle_item(tuple, map) :: verdict
  def handle_item({:event, event, measurements, metadata}, context)
      when is_list(event) and is_map(measurements) and is_map(metadata) do
    :telemetry.execute(event, measurements, SafeMetadata.enrich(metadata, context))
    bump(:events)
    :event
  end

  def handle_item({:log, line}, context) when is_binary(line) do
    Logger.log(log_level(line), printable(unfold(line)),
      worker_id: context[:worker_id],
      python: true
    )

    bump(:log_lines)
    :log
  end

  def handle_item({:malformed, reason, message}, _context) when reason in @reasons do
    Logger.debug(fn -> "dropped malformed telemetry line (#{reason}): #{message}" end)
    bump(reason)
    {:malformed, reason}
  end

  # Not an item (a forged batch): skipped.
  def handle_item(_other, _context), do: :ignored

  @doc false
  # Adds `n` to a drop counter (StderrIngest), or to line_too_long (a port
  # owner that dropped an over-long line, e.g. GRPCWorker).
  def count(slot, n) when slot in [:line_too_long | @drops],
    do: :counters.add(counters(), slot_index(slot), n)

  # Parsing costs in proportion to the line: up to 8 KiB it stays well
  # under a millisecond, longer lines (up to 64 KiB, then refused unread)
  # go to a dirty scheduler.
  @inline_line_bytes 8 * 1024
  defp parse(line) when byte_size(line) <= @inline_line_bytes, do: Native.stderr_parse_line(line)

  defp parse(line) when byte_size(line) <= @max_line + 1,
    do: Native.stderr_parse_line_dirty(line)

  defp parse(line), do: Native.stderr_parse_line(binary_part(line, 0, @max_line + 1))

  @doc """
  The Logger level of a worker's output line: the level of a line of the
  worker's logging format (`snakepit-worker[pid] WARNING ...`: debug, info,
  warning, error; critical is error), error for the lines of an uncaught
  exception (`Traceback (most recent call last):` and the final
  `SomeError: message`), info for anything else.
  """
  @spec log_level(binary) :: Logger.level()
  def log_level("snakepit-worker[" <> rest) do
    case :binary.split(rest, "] ") do
      [_pid, "DEBUG " <> _] -> :debug
      [_pid, "WARNING " <> _] -> :warning
      [_pid, "ERROR " <> _] -> :error
      [_pid, "CRITICAL " <> _] -> :error
      _ -> :info
    end
  end

  def log_level("Traceback (most recent call last):" <> _), do: :error

  def log_level(line) do
    if Regex.match?(~r/\A[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt): /, line),
      do: :error,
      else: :info
  end

  # One Python log record is one line, its line ends written as U+2028
  # (snakepit_bridge.server.logs): one Logger entry with its newlines back.
  defp unfold(line), do: String.replace(line, "\u2028", "\n")

  # Logger formatters expect UTF-8; a worker may write anything, and as
  # much as it likes: a logged line is cut at one stderr line's limit.
  defp printable(line) when byte_size(line) > @max_line,
    do: printable(SafeMetadata.truncate(line, @max_line)) <> " ... (#{byte_size(line)} bytes)"

  defp printable(line), do: if(String.valid?(line), do: line, else: inspect(line))

  @doc """
  Counts since the application started:
  `%{events: n, log_lines: n, malformed: n, malformed_by_reason: %{reason => n},
  queue_full: n, backlog_full: n}` (the last two: lines `StderrIngest` dropped).
  """
  @spec stats() :: map
  def stats do
    ref = counters()

    by_slot =
      for {slot, i} <- Enum.with_index(@slots, 1), into: %{}, do: {slot, :counters.get(ref, i)}

    by_reason = Map.take(by_slot, @reasons) |> Map.reject(fn {_, n} -> n == 0 end)

    %{
      events: by_slot.events,
      log_lines: by_slot.log_lines,
      malformed: by_reason |> Map.values() |> Enum.sum(),
      malformed_by_reason: by_reason,
      queue_full: by_slot.queue_full,
      backlog_full: by_slot.backlog_full
    }
  end

  @doc false
  def init_counters do
    :persistent_term.put(@counters_key, :counters.new(length(@slots), [:write_concurrency]))
  end

  defp counters do
    case :persistent_term.get(@counters_key, nil) do
      nil ->
        init_counters()
        :persistent_term.get(@counters_key)

      ref ->
        ref
    end
  end

  for {slot, i} <- Enum.with_index(@slots, 1) do
    defp bump(unquote(slot)), do: :counters.add(counters(), unquote(i), 1)
    defp slot_index(unquote(slot)), do: unquote(i)
  end

  ## A captured Python program

  @doc """
  Runs a program (normally Python) and handles every line it writes to stdout
  or stderr with `handle_line/2`.

  ## Options

    * `:executable` - path of the program (required)
    * `:args` - arguments (default `[]`)
    * `:env` - extra environment, `[{"NAME", "value"}]` (default `[]`)
    * `:context` - worker context for enrichment, e.g.
      `%{worker_id: "w1", pool_name: :default}`; `python_pid` is filled in
    * `:notify` - a pid sent `{:python_capture_exit, capture_pid, exit_status}`
      when the program exits (the capture then stops normally)
  """
  @spec start_link(keyword) :: GenServer.on_start() | {:error, term}
  defdelegate start_link(opts), to: Snakepit.Telemetry.PythonCapture.Program

  @doc false
  def child_spec(opts), do: Snakepit.Telemetry.PythonCapture.Program.child_spec(opts)
end
