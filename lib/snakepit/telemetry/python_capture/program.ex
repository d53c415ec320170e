defmodule Snakepit.Telemetry.PythonCapture.Program do
  @moduledoc false
  # The port owner of `PythonCapture.start_link/1`: runs the program
  # (`Snakepit.OSProcess`) and hands every whole output line to
  # `StderrIngest`, whose parsed items come back to `PythonCapture`'s
  # classifier. Documented at `PythonCapture.start_link/1`.

  use GenServer

  alias Snakepit.{Args, OSProcess, Stray}
  alias Snakepit.Telemetry.{Catalog, PythonCapture, StderrIngest}

  @max_line Catalog.limits().max_stderr_line_bytes

  def start_link(opts) do
    with :ok <- validate(opts), do: GenServer.start_link(__MODULE__, opts)
  end

  defp validate(opts) do
    cond do
      not Keyword.keyword?(opts) ->
        {:error, {:invalid_options, opts}}

      not is_binary(opts[:executable]) ->
        {:error, {:invalid_option, {:executable, opts[:executable]}}}

      not Args.list_of?(Keyword.get(opts, :args, []), &is_binary/1) ->
        {:error, {:invalid_option, {:args, opts[:args]}}}

      not Args.list_of?(Keyword.get(opts, :env, []), &env_pair?/1) ->
        {:error, {:invalid_option, {:env, opts[:env]}}}

      not context?(Keyword.get(opts, :context, %{})) ->
        {:error, {:invalid_option, {:context, opts[:context]}}}

      not (is_nil(opts[:notify]) or is_pid(opts[:notify])) ->
        {:error, {:invalid_option, {:notify, opts[:notify]}}}

      true ->
        :ok
    end
  end

  defp env_pair?({k, v}), do: (is_binary(k) or is_atom(k)) and is_binary(v)
  defp env_pair?(_), do: false

  defp context?(ctx), do: is_map(ctx) or Keyword.keyword?(ctx)

  @impl true
  def init(opts) do
    proc =
      OSProcess.open(Keyword.fetch!(opts, :executable), Keyword.get(opts, :args, []),
        env: Keyword.get(opts, :env, []),
        max_line: @max_line
      )

    context = opts |> Keyword.get(:context, %{}) |> Map.new() |> Map.put(:python_pid, proc.os_pid)

    ingest = StderrIngest.start(context)
    {:ok, %{port: proc.port, proc: proc, context: context, ingest: ingest, notify: opts[:notify]}}
  end

  @impl true
  def handle_info({port, {:data, data}}, %{port: port} = s),
    do: {:noreply, %{s | proc: StderrIngest.push_output(s.ingest, s.proc, data)}}

  def handle_info({port, {:exit_status, status}}, %{port: port} = s) do
    # Its last lines may still be in the ingest: handle them first.
    StderrIngest.drain(s.ingest, 5_000)
    if s.notify, do: send(s.notify, {:python_capture_exit, self(), status})
    {:stop, :normal, %{s | port: nil}}
  end

  def handle_info(message, s) do
    StderrIngest.handle_or_ignore(message, s.ingest, PythonCapture)
    {:noreply, s}
  end

  @impl true
  def handle_call(request, _from, s), do: Stray.call(__MODULE__, request, s)

  @impl true
  def handle_cast(message, s), do: Stray.cast(__MODULE__, message, s)

  @impl true
  def terminate(_reason, %{port: nil}), do: :ok

  # Closing stdin is a hint, not a guarantee: make sure the program ends.
  def terminate(_reason, s), do: OSProcess.stop(s.proc, 2_000)
end
