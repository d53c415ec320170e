defmodule Snakepit.GRPCWorker.StartupOutput do
  @moduledoc false
  # A worker's output before its ready line. Telemetry lines go to the
  # ingest at once; other lines are held (the last @keep), so that a worker
  # that fails to start is reported in one error entry that quotes them and
  # says what to do, and a worker that starts has them logged then, in
  # order, at their levels. A line pushed out of the window is handed to the
  # ingest: nothing is lost either way.

  alias Snakepit.Telemetry.StderrIngest

  @keep 30
  @telemetry "TELEMETRY:"
  # One Python log record's line ends, written as U+2028 (snakepit_bridge.server.logs).
  @line_break "\u2028"
  # A quoted line is cut here: the entry stays readable.
  @max_quoted 2_048

  defstruct held: :queue.new(), count: 0, earlier: 0

  @type t :: %__MODULE__{
          held: :queue.queue(binary),
          count: non_neg_integer,
          earlier: non_neg_integer
        }

  @spec new() :: t
  def new, do: %__MODULE__{}

  @doc "Takes one line: a telemetry line is pushed to `ingest`, any other held."
  @spec add(t, binary, StderrIngest.t()) :: t
  def add(out, @telemetry <> _ = line, ingest) do
    StderrIngest.push(ingest, line)
    out
  end

  def add(%__MODULE__{count: @keep} = out, line, ingest) do
    {{:value, oldest}, held} = :queue.out(out.held)
    StderrIngest.push(ingest, oldest)
    %{out | held: :queue.in(line, held), earlier: out.earlier + 1}
  end

  def add(out, line, _ingest), do: %{out | held: :queue.in(line, out.held), count: out.count + 1}

  @doc "The worker is ready: the held lines go to the ingest (logged as usual)."
  @spec release(t, StderrIngest.t()) :: :ok
  def release(out, ingest),
    do: Enum.each(:queue.to_list(out.held), &StderrIngest.push(ingest, &1))

  @doc "The held lines for an error entry: indented, a record's line ends restored."
  @spec quoted(t) :: String.t()
  def quoted(%__MODULE__{count: 0}), do: "    (nothing)"

  def quoted(out) do
    lines =
      for line <- :queue.to_list(out.held) do
        line
        |> Snakepit.Telemetry.SafeMetadata.truncate(@max_quoted)
        |> printable()
        |> String.replace(@line_break, "\n")
        |> String.replace("\n", "\n        ")
        |> then(&("    " <> &1))
      end

    earlier =
      if out.earlier > 0, do: ["    (#{out.earlier} earlier lines logged above)"], else: []

    Enum.join(earlier ++ lines, "\n")
  end

  # Logger formatters expect UTF-8; a worker may write anything.
  defp printable(line), do: if(String.valid?(line), do: line, else: inspect(line))

  @doc "What to do about a failed start, read from its output."
  @spec advice(t) :: String.t()
  def advice(out) do
    text = Enum.join(:queue.to_list(out.held), "\n")

    cond do
      text =~ "cannot start the worker: No module named" ->
        "To fix: run `mix snakepit.setup` (it creates the application's Python " <>
          "environment with the worker's requirements), or set config :snakepit_telemetry, " <>
          "python_executable: \"/path/to/python\" to an interpreter that has them."

      text =~ "cannot import tool module" ->
        "To fix: check the pool's :adapter_module and add the folder that holds it " <>
          "to :python_path (see Snakepit.Pool)."

      true ->
        "Run `mix snakepit.doctor` to check the Python environment."
    end
  end
end
