defmodule Snakepit.Telemetry.AppEvents do
  @moduledoc """
  Events an application adds to the catalog, and extra allowlisted keys,
  from configuration:

      config :snakepit_telemetry,
        events: [
          [
            python_name: "my_app.prediction",
            event: [:my_app, :prediction],
            measurements: [:score, :latency_ms],
            metadata: [:customer_id, :model]
          ]
        ],
        # allowlisted for every event (atom keys in handlers)
        measurement_keys: [:gpu_seconds],
        metadata_keys: [:tenant]

  Python code emits them as any event (`telemetry.emit("my_app.prediction",
  {"score": 0.9}, {"customer_id": "c1"})`; the Python side needs no change)
  and handlers attach to the Elixir name: `[:my_app, :prediction]` with
  `%{customer_id: "c1"}`. The NIF validates against the library's catalog
  plus these, installed once when the application starts (no rebuild).
  Atoms come only from this configuration, never from a worker's input:
  an event or key a worker sends that is not declared stays unknown (an
  unknown event is rejected and counted; an unknown key arrives as a string).

  A bad definition (a name that clashes with the library's events or
  another definition, a malformed name or key, a wrong shape) stops the
  application at start with `{:invalid_event_definition, reason}`. An
  application's measurements arrive as sent (no unit conversion; a
  `duration` key, the library's, is still converted from nanoseconds).
  `Snakepit.Telemetry.Naming.describe/1` and `mix snakepit.events` know
  these events.
  """

  alias Snakepit.Telemetry.Native

  @key {__MODULE__, :installed}

  @typedoc "One definition, as configured."
  @type definition :: keyword

  @doc """
  Installs the configured events and keys (at application start). `:ok`, or
  `{:error, {:invalid_event_definition, reason}}`.
  """
  @spec install() :: :ok | {:error, {:invalid_event_definition, term}}
  def install do
    install(
      Application.get_env(:snakepit_telemetry, :events, []),
      Application.get_env(:snakepit_telemetry, :measurement_keys, []),
      Application.get_env(:snakepit_telemetry, :metadata_keys, [])
    )
  end

  @doc false
  def install([], [], []), do: :ok

  def install(events, measurement_keys, metadata_keys) do
    with {:ok, defs} <- definitions(events),
         {:ok, m_keys} <- keys(:measurement_keys, measurement_keys),
         {:ok, md_keys} <- keys(:metadata_keys, metadata_keys),
         :ok <- native_install(defs, m_keys, md_keys) do
      :persistent_term.put(@key, table(defs, m_keys, md_keys))
      :ok
    end
  end

  @doc """
  The configured application events as catalog entries, without installing
  them (for `mix snakepit.events`); names are checked when installed.
  """
  @spec configured_entries() :: {:ok, [map]} | {:error, {:invalid_event_definition, term}}
  def configured_entries do
    with {:ok, defs} <- definitions(Application.get_env(:snakepit_telemetry, :events, [])),
         do: {:ok, table(defs, [], []).entries}
  end

  @doc "The installed application events, as catalog entries (python layer)."
  @spec entries() :: [Snakepit.Telemetry.Catalog.entry()]
  def entries, do: installed().entries

  @doc "The installed extra keys: `%{measurement: [atom], metadata: [atom]}` (event keys included)."
  @spec keys() :: %{measurement: [atom], metadata: [atom]}
  def keys, do: installed().keys

  @doc false
  # Python name and dotted Elixir name => event, for lookups.
  def names, do: installed().names

  @doc false
  # Each extra key's text => its atom, for lookups by name.
  def key_atoms, do: installed().key_atoms

  defp installed do
    :persistent_term.get(@key, %{
      entries: [],
      keys: %{measurement: [], metadata: []},
      names: %{},
      key_atoms: %{}
    })
  end

  defp definitions(events) when is_list(events) do
    Enum.reduce_while(events, {:ok, []}, fn def, {:ok, acc} ->
      case definition(def) do
        {:ok, d} -> {:cont, {:ok, [d | acc]}}
        {:error, why} -> {:halt, invalid({why, def})}
      end
    end)
    |> case do
      {:ok, defs} -> {:ok, Enum.reverse(defs)}
      error -> error
    end
  end

  defp definitions(other), do: invalid({"events must be a list", other})

  defp definition(def) do
    cond do
      not Keyword.keyword?(def) ->
        {:error, "a definition is a keyword list"}

      bad =
          Enum.find(
            Keyword.keys(def),
            &(&1 not in [:python_name, :event, :measurements, :metadata])
          ) ->
        {:error, "unknown option #{inspect(bad)}"}

      not (is_binary(def[:python_name]) and String.valid?(def[:python_name])) ->
        {:error, ":python_name must be a string such as \"my_app.prediction\""}

      not atoms?(def[:event]) or def[:event] == [] ->
        {:error, ":event must be a list of atoms such as [:my_app, :prediction]"}

      not atoms?(Keyword.get(def, :measurements, [])) ->
        {:error, ":measurements must be a list of atoms"}

      not atoms?(Keyword.get(def, :metadata, [])) ->
        {:error, ":metadata must be a list of atoms"}

      true ->
        {:ok,
         %{
           python_name: def[:python_name],
           event: def[:event],
           measurements: Keyword.get(def, :measurements, []),
           metadata: Keyword.get(def, :metadata, [])
         }}
    end
  end

  defp keys(name, list) do
    if atoms?(list), do: {:ok, list}, else: invalid({"#{name} must be a list of atoms", list})
  end

  defp atoms?(list),
    do: Snakepit.Args.list_of?(list, &(is_atom(&1) and not is_nil(&1) and not is_boolean(&1)))

  defp invalid(reason), do: {:error, {:invalid_event_definition, reason}}

  # The Rust side checks names (a clash with the library's events or
  # another definition, characters, lengths) and builds its tables.
  defp native_install(defs, m_keys, md_keys) do
    json =
      object([
        {"events",
         Enum.map(defs, fn d ->
           object([
             {"event", Enum.map(d.event, &Atom.to_string/1)},
             {"python_name", d.python_name},
             {"measurements", Enum.map(d.measurements, &Atom.to_string/1)},
             {"metadata", Enum.map(d.metadata, &Atom.to_string/1)}
           ])
         end)},
        {"measurement_keys", Enum.map(m_keys, &Atom.to_string/1)},
        {"metadata_keys", Enum.map(md_keys, &Atom.to_string/1)}
      ])

    {:json, json} = json

    case Native.catalog_install(IO.iodata_to_binary(json)) do
      {:ok, :ok} -> :ok
      {:error, reason} -> invalid(reason)
    end
  end

  defp table(defs, m_keys, md_keys) do
    entries =
      for d <- defs do
        %{
          event: d.event,
          layer: :python,
          python_name: d.python_name,
          measurements: d.measurements,
          metadata: d.metadata,
          emitted: true,
          sent: %{measurements: [], metadata: []},
          reserved: nil,
          application: true
        }
      end

    names =
      for d <- defs,
          name <- [d.python_name, Enum.map_join(d.event, ".", &Atom.to_string/1)],
          into: %{},
          do: {name, d.event}

    keys = %{
      measurement: Enum.uniq(m_keys ++ Enum.flat_map(defs, & &1.measurements)),
      metadata: Enum.uniq(md_keys ++ Enum.flat_map(defs, & &1.metadata))
    }

    key_atoms = Map.new(keys.measurement ++ keys.metadata, &{Atom.to_string(&1), &1})
    %{entries: entries, names: names, keys: keys, key_atoms: key_atoms}
  end

  # A minimal JSON writer for the extension (strings, lists, objects).
  defp object(pairs) do
    members = Enum.map(pairs, fn {k, v} -> [string(k), ":", value(v)] end)
    {:json, ["{", Enum.intersperse(members, ","), "}"]}
  end

  defp value({:json, iodata}), do: iodata

  defp value(list) when is_list(list),
    do: ["[", Enum.intersperse(Enum.map(list, &value/1), ","), "]"]

  defp value(s) when is_binary(s), do: string(s)

  defp string(s) do
    escaped =
      for <<c::utf8 <- s>>, into: "" do
        case c do
          ?" -> "\\\""
          ?\\ -> "\\\\"
          c when c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
          c -> <<c::utf8>>
        end
      end

    [?", escaped, ?"]
  end
end
