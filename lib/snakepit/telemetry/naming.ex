defmodule Snakepit.Telemetry.Naming do
  @moduledoc """
  Event names and keys, from the catalog (`Snakepit.Telemetry.Catalog`).

  Names arrive from workers as strings. Only catalog names become events, and
  no function here creates an atom from its input: allowlisted keys map to
  atoms that already exist (they are compiled in), everything else stays a
  string.

  Python names map onto Elixir events:

      iex> Snakepit.Telemetry.Naming.from_parts("python.call.start")
      {:ok, [:snakepit, :python, :call, :start]}

      iex> Snakepit.Telemetry.Naming.from_parts(["tool", "result_size"])
      {:ok, [:snakepit, :python, :tool, :result_size]}

      iex> Snakepit.Telemetry.Naming.from_parts("python.unknown")
      {:error, :unknown_event}
  """

  alias Snakepit.Telemetry.{AppEvents, Catalog}

  @entries Catalog.entries()
  @all_events Enum.map(@entries, & &1.event)
  @event_set MapSet.new(@all_events)

  # Python name and dotted Elixir name of every event a worker may emit.
  @ingest Enum.reduce(@entries, %{}, fn
            %{python_name: nil}, acc ->
              acc

            %{python_name: py, event: event}, acc ->
              acc
              |> Map.put(py, event)
              |> Map.put(Enum.map_join(event, ".", &Atom.to_string/1), event)
          end)

  @python_catalog for %{python_name: py, event: e} <- @entries, py, into: %{}, do: {py, e}
  @measurement_keys Map.new(Catalog.measurement_keys(), &{Atom.to_string(&1), &1})
  @metadata_keys Map.new(Catalog.metadata_keys(), &{Atom.to_string(&1), &1})

  @type event :: [atom, ...]

  @doc """
  Resolves a worker's event name: a dotted Python name (`"tool.execution.stop"`),
  the dotted Elixir name, or the wire's `event_parts` list of strings.
  """
  @spec from_parts(String.t() | [String.t()]) :: {:ok, event} | {:error, :unknown_event}
  def from_parts(name) when is_binary(name) do
    case Map.fetch(@ingest, name) do
      {:ok, event} -> {:ok, event}
      :error -> app_event(name)
    end
  end

  def from_parts(parts) when is_list(parts) do
    if Enum.all?(parts, &is_binary/1),
      do: from_parts(Enum.join(parts, ".")),
      else: {:error, :unknown_event}
  end

  def from_parts(_), do: {:error, :unknown_event}

  # The application's events (Snakepit.Telemetry.AppEvents).
  defp app_event(name) do
    case Map.fetch(AppEvents.names(), name) do
      {:ok, event} -> {:ok, event}
      :error -> {:error, :unknown_event}
    end
  end

  @doc """
  A measurement key as it should appear in an event: the allowlisted atom, or
  the key itself as a string.

      iex> Snakepit.Telemetry.Naming.measurement_key("duration")
      :duration
      iex> Snakepit.Telemetry.Naming.measurement_key("my_custom_gauge")
      "my_custom_gauge"
  """
  @spec measurement_key(String.t() | atom) :: atom | String.t()
  def measurement_key(key), do: lookup(@measurement_keys, key)

  @doc "Like `measurement_key/1`, for metadata keys."
  @spec metadata_key(String.t() | atom) :: atom | String.t()
  def metadata_key(key), do: lookup(@metadata_keys, key)

  defp lookup(table, key) when is_binary(key) do
    case table do
      %{^key => atom} -> atom
      _ -> app_key(key)
    end
  end

  defp lookup(table, key) when is_atom(key), do: lookup(table, Atom.to_string(key))

  # An application's allowlisted key: the atom its configuration made.
  defp app_key(key), do: Map.get(AppEvents.key_atoms(), key, key)

  @doc "Python name => Elixir event, for every event a worker may emit (the application's too)."
  @spec python_event_catalog() :: %{String.t() => event}
  def python_event_catalog do
    for %{python_name: py, event: e} <- AppEvents.entries(), into: @python_catalog, do: {py, e}
  end

  @doc "Every catalog event, the application's (`Snakepit.Telemetry.AppEvents`) last."
  @spec events() :: [event]
  def events, do: @all_events ++ Enum.map(AppEvents.entries(), & &1.event)

  @doc "Layer 1: pool, worker and session events emitted by Elixir."
  @spec infrastructure_events() :: [event]
  def infrastructure_events, do: layer(:infrastructure)

  @doc "Layer 2: events emitted by Python workers (the application's too)."
  @spec python_events() :: [event]
  def python_events, do: layer(:python) ++ Enum.map(AppEvents.entries(), & &1.event)

  @doc "Layer 3: gRPC bridge events emitted by Elixir and the ingest."
  @spec grpc_events() :: [event]
  def grpc_events, do: layer(:grpc)

  for layer <- [:infrastructure, :python, :grpc] do
    events = for %{layer: ^layer, event: e} <- @entries, do: e
    defp layer(unquote(layer)), do: unquote(events)
  end

  @doc "True when `event` is in the catalog."
  @spec known_event?(term) :: boolean
  def known_event?(event),
    do: MapSet.member?(@event_set, event) or Enum.any?(AppEvents.entries(), &(&1.event == event))

  # What every event of a layer carries besides its catalog metadata: the
  # enrichment of worker events, the stream id of the gRPC status events.
  @carried %{
    python: [:node, :worker_id, :pool_name, :python_pid, :correlation_id, :timestamp_ns],
    grpc_status: [:node, :worker_id, :stream_id]
  }
  @status_events for e <-
                       [[:stream, :opened], [:stream, :closed]] ++
                         for(s <- [:established, :lost, :reconnected], do: [:connection, s]),
                     do: [:snakepit, :grpc | e]

  @doc """
  The catalog entry of `event` (measurements, metadata, layer), or `nil`.
  `event` is the Elixir name or a worker's dotted Python name
  (`"tool.result_size"`). `metadata` lists what arrives: the catalog's keys
  plus what every event of its kind carries (`node`, `worker_id`,
  `pool_name`, `python_pid`, `correlation_id`, `timestamp_ns` on worker
  events; `stream_id` on the gRPC stream and connection events).
  """
  @spec describe(event | String.t()) :: Catalog.entry() | nil
  def describe(name) when is_binary(name) do
    case from_parts(name) do
      {:ok, event} -> describe(event)
      {:error, _} -> nil
    end
  end

  def describe(event) do
    case Enum.find(@entries, &(&1.event == event)) ||
           Enum.find(AppEvents.entries(), &(&1.event == event)) do
      nil -> nil
      entry -> describe_entry(entry)
    end
  end

  @doc false
  # A catalog entry as describe/1 gives it: with what its kind of event
  # carries (also for application entries not installed yet, see
  # Snakepit.Telemetry.Events.Reference).
  def describe_entry(entry), do: with_carried(entry, carried(entry))

  defp with_carried(entry, carried) do
    entry = Map.update!(entry, :metadata, &Enum.uniq(&1 ++ carried))

    case entry.sent do
      nil -> entry
      sent -> %{entry | sent: %{sent | metadata: Enum.uniq(sent.metadata ++ carried)}}
    end
  end

  defp carried(%{layer: :python}), do: @carried.python
  defp carried(%{event: e}) when e in @status_events, do: @carried.grpc_status
  defp carried(_), do: []

  ## Event builders: raise on a name that is not in the catalog, so a typo in
  ## our own code fails loudly instead of emitting an event nobody handles.

  @doc "`pool_event(:initialized)` => `[:snakepit, :pool, :initialized]`."
  @spec pool_event(atom | [atom]) :: event
  def pool_event(suffix), do: build([:snakepit, :pool], suffix)

  @doc "`worker_event(:spawned)` => `[:snakepit, :pool, :worker, :spawned]`."
  @spec worker_event(atom) :: event
  def worker_event(suffix), do: build([:snakepit, :pool, :worker], suffix)

  @doc "`session_event(:created)` => `[:snakepit, :session, :created]`."
  @spec session_event(atom | [atom]) :: event
  def session_event(suffix), do: build([:snakepit, :session], suffix)

  @doc "`grpc_event([:stream, :opened])` => `[:snakepit, :grpc, :stream, :opened]`."
  @spec grpc_event([atom]) :: event
  def grpc_event(suffix), do: build([:snakepit, :grpc], suffix)

  @doc "`python_event([:call, :start])` => `[:snakepit, :python, :call, :start]`."
  @spec python_event([atom]) :: event
  def python_event(suffix), do: build([:snakepit, :python], suffix)

  defp build(prefix, suffix) do
    event = prefix ++ List.wrap(suffix)

    if known_event?(event),
      do: event,
      else: raise(ArgumentError, "#{inspect(event)} is not in the telemetry catalog")
  end
end
