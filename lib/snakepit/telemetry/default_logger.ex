defmodule Snakepit.Telemetry.DefaultLogger do
  @moduledoc """
  A ready-made `:telemetry` handler that logs Snakepit's events, one line
  each (as `Oban.Telemetry.attach_default_logger/1` does for Oban):

      Snakepit.Telemetry.DefaultLogger.attach(level: :info, events: [:python, :grpc])
      # [info] snakepit.python.call.stop worker_id=default_1 tool=predict duration=12.3ms ...

  ## Options

    * `:level` - the Logger level (default `:info`)
    * `:events` - `:all` (default), or a list of layers (`:pool`, `:python`,
      `:grpc`) and/or event names (`[:snakepit, :grpc, :connection, :lost]`)

  Durations (native units) are logged in milliseconds; metadata values are
  shown as they are, cut at 200 characters. `attach/1` returns
  `{:error, :already_exists}` if attached already; `detach/0` removes it.
  """

  require Logger

  alias Snakepit.Telemetry.{Catalog, Naming}

  @handler_id {__MODULE__, :default}
  @levels [:debug, :info, :notice, :warning, :error, :critical, :alert, :emergency]

  @doc "Attaches the logger; see the module documentation for the options."
  @spec attach(keyword) :: :ok | {:error, term}
  def attach(opts \\ []) do
    level = Keyword.get(opts, :level, :info)

    with true <- Keyword.keyword?(opts) || {:error, {:invalid_options, opts}},
         true <- level in @levels || {:error, {:invalid_level, level}},
         {:ok, events} <- events(Keyword.get(opts, :events, :all)) do
      :telemetry.attach_many(@handler_id, events, &__MODULE__.handle_event/4, %{level: level})
    end
  end

  @doc "Detaches the logger."
  @spec detach() :: :ok | {:error, :not_found}
  def detach, do: :telemetry.detach(@handler_id)

  defp events(:all), do: {:ok, Naming.events()}

  defp events(list) when is_list(list) do
    Enum.reduce_while(list, {:ok, []}, fn
      layer, {:ok, acc} when layer in [:pool, :python, :grpc] ->
        {:cont, {:ok, acc ++ layer(layer)}}

      event, {:ok, acc} when is_list(event) ->
        if Naming.known_event?(event),
          do: {:cont, {:ok, acc ++ [event]}},
          else: {:halt, {:error, {:unknown_event, event}}}

      other, _ ->
        {:halt, {:error, {:invalid_event, other}}}
    end)
    |> case do
      {:ok, events} -> {:ok, Enum.uniq(events)}
      error -> error
    end
  end

  defp events(other), do: {:error, {:invalid_events, other}}

  defp layer(:pool), do: Naming.infrastructure_events()
  defp layer(:python), do: Naming.python_events()
  defp layer(:grpc), do: Naming.grpc_events()

  @doc false
  def handle_event(event, measurements, metadata, %{level: level}) do
    Logger.log(level, fn -> line(event, measurements, metadata) end, snakepit_event: true)
  end

  @durations Catalog.duration_keys()

  defp line(event, measurements, metadata) do
    name = Enum.map_join(event, ".", &to_string/1)

    meta =
      for {k, v} <- Enum.sort_by(metadata, &to_string(elem(&1, 0))),
          not is_nil(v),
          do: "#{k}=#{value(v)}"

    values =
      for {k, v} <- Enum.sort_by(measurements, &to_string(elem(&1, 0))),
          do: "#{k}=#{measure(k, v)}"

    Enum.join([name | meta ++ values], " ")
  end

  defp measure(:system_time, v), do: v

  defp measure(k, v) when k in @durations and is_integer(v),
    do: "#{Float.round(System.convert_time_unit(v, :native, :microsecond) / 1000, 3)}ms"

  defp measure(_k, v), do: v

  defp value(v) when is_binary(v), do: String.slice(v, 0, 200)
  defp value(v), do: v |> inspect(limit: 10) |> String.slice(0, 200)
end
