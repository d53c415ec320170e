defmodule Snakepit.Telemetry.StderrIngest do
  @moduledoc """
  A worker's output lines, parsed and validated off the schedulers.

  The process that reads a worker's port owns an ingest: it pushes each line
  with `push/2` (the line is only copied into a bounded channel) and hands
  every `{:snakepit_stderr_batch, ...}` message it receives to
  `handle_message/2`. A Rust thread parses the lines (`TELEMETRY:` lines
  with serde_json, the same validation as the gRPC path) and sends them back
  in batches, in line order, with credit: at most 4 batches are in the
  owner's mailbox. Each item is then what `PythonCapture.handle_line/2`
  does with a line: a `:telemetry` event enriched with the context, a log
  line, or a counted rejection. Lines dropped because the queue was full
  (4096 lines or 4 MiB waiting) or for want of credit are counted in
  `PythonCapture.stats/0` (`:queue_full`, `:backlog_full`).

  The ingest ends when its owner exits.
  """

  alias Snakepit.Stray
  alias Snakepit.Telemetry.{Native, PythonCapture}

  @enforce_keys [:id, :handle, :context, :counts]
  defstruct [:id, :handle, :context, :counts]

  @type t :: %__MODULE__{id: pos_integer, handle: reference, context: map, counts: reference}

  # :counts slots: lines queued, lines handled (an item or a counted drop).
  @queued 1
  @handled 2

  @doc "Starts an ingest owned by the calling process; `context` enriches its events."
  @spec start(map) :: t
  def start(context) when is_map(context) do
    {:ok, {id, handle}} = Native.stderr_ingest_start(self())
    %__MODULE__{id: id, handle: handle, context: context, counts: :counters.new(2, [])}
  end

  @doc "Updates the context that enriches later items."
  @spec put_context(t, map) :: t
  def put_context(%__MODULE__{} = ingest, context), do: %{ingest | context: context}

  @doc "Queues one output line (without its line ending); a full queue drops it, counted."
  @spec push(t, binary) :: :ok | {:error, :queue_full | :closed}
  def push(%__MODULE__{handle: handle, counts: counts}, line) when is_binary(line) do
    case Native.stderr_ingest_push(handle, line) do
      :ok ->
        :counters.add(counts, @queued, 1)
        :ok

      {:error, :queue_full} = error ->
        PythonCapture.count(:queue_full, 1)
        error

      error ->
        error
    end
  end

  @doc """
  For a port owner: feeds one `{:data, data}` of its `Snakepit.OSProcess`;
  a whole line is pushed, a line over the bound counted (`line_too_long` in
  `PythonCapture.stats/0`). Returns the process state to keep.
  """
  @spec push_output(t, Snakepit.OSProcess.t(), {:eol | :noeol, binary}) :: Snakepit.OSProcess.t()
  def push_output(%__MODULE__{} = ingest, proc, data) do
    case Snakepit.OSProcess.feed(proc, data) do
      {:line, line, proc} ->
        push(ingest, line)
        proc

      {:too_long, proc} ->
        PythonCapture.count(:line_too_long, 1)
        proc

      {:more, proc} ->
        proc
    end
  end

  @doc """
  Handles a message of this ingest: `:ok` when it was one (its items are
  dispatched and credit returned), `:ignore` for any other message.
  """
  @spec handle_message(term, t) :: :ok | :ignore
  def handle_message({:snakepit_stderr_batch, id, items, dropped}, %__MODULE__{id: id} = ingest)
      when is_list(items) and is_integer(dropped) do
    Enum.each(items, &PythonCapture.handle_item(&1, ingest.context))
    if dropped > 0, do: PythonCapture.count(:backlog_full, dropped)
    :counters.add(ingest.counts, @handled, length(items) + dropped)
    Native.stderr_ingest_ack(ingest.handle, 1)
    :ok
  end

  def handle_message(_message, _ingest), do: :ignore

  @doc """
  For an owner's `handle_info/2`: a message of this ingest is handled, any
  other is a stray one, logged at debug level for `owner` and ignored.
  """
  @spec handle_or_ignore(term, t, module) :: :ok
  def handle_or_ignore(message, ingest, owner) do
    if handle_message(message, ingest) == :ignore, do: Stray.info(owner, message, nil)
    :ok
  end

  @doc """
  Handles this ingest's batches until every queued line is handled (or
  `timeout` ms pass): before the owner stops, so a worker's last lines (a
  traceback, say) are not lost. `:ok` or `:timeout`.
  """
  @spec drain(t, timeout) :: :ok | :timeout
  def drain(%__MODULE__{id: id} = ingest, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout
    drain_until(ingest, id, deadline)
  end

  defp drain_until(ingest, id, deadline) do
    if :counters.get(ingest.counts, @handled) >= :counters.get(ingest.counts, @queued) do
      :ok
    else
      wait = max(deadline - System.monotonic_time(:millisecond), 0)

      receive do
        {:snakepit_stderr_batch, ^id, _, _} = message ->
          handle_message(message, ingest)
          drain_until(ingest, id, deadline)
      after
        wait -> :timeout
      end
    end
  end

  @doc "`%{lines, queue_full, backlog_full, batches}` of this ingest."
  @spec stats(t) :: map
  def stats(%__MODULE__{handle: handle}), do: Native.stderr_ingest_stats(handle)
end
