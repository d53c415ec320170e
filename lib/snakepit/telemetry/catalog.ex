defmodule Snakepit.Telemetry.Catalog do
  @moduledoc """
  The event catalog as Elixir reads it: `priv/catalog/telemetry_catalog.json`,
  decoded at compile time (the module recompiles when the file changes).

  The same file is compiled into the Rust NIF and read by the Python package
  at import, so the three languages cannot drift; `summary/0` is the canonical
  form a test compares across all three.
  """

  alias Snakepit.Telemetry.Catalog.JSON

  @path Path.expand("../../../priv/catalog/telemetry_catalog.json", __DIR__)
  @external_resource @path
  @doc_data JSON.decode!(File.read!(@path))

  to_atoms = fn names -> Enum.map(names, &String.to_atom/1) end

  @events Enum.map(@doc_data["events"], fn e ->
            %{
              event: to_atoms.(e["event"]),
              layer: String.to_atom(e["layer"]),
              python_name: e["python_name"],
              measurements: to_atoms.(e["measurements"]),
              metadata: to_atoms.(e["metadata"]),
              emitted: Map.has_key?(e, "sent"),
              sent:
                e["sent"] &&
                  %{
                    measurements: to_atoms.(e["sent"]["measurements"]),
                    metadata: to_atoms.(e["sent"]["metadata"])
                  },
              reserved: e["reserved"]
            }
          end)
  @units for {k, v} <- @doc_data["measurement_units"],
             not String.starts_with?(k, "_"),
             into: %{},
             do: {String.to_atom(k), String.to_atom(v)}
  @limits Map.new(@doc_data["limits"], fn {k, v} -> {String.to_atom(k), v} end)
  @defaults for {k, v} <- @doc_data["defaults"],
                not String.starts_with?(k, "_"),
                into: %{},
                do: {String.to_atom(k), v}
  @rejection_reasons to_atoms.(@doc_data["rejection_reasons"])
  @measurement_keys to_atoms.(@doc_data["measurement_keys"])
  @metadata_keys to_atoms.(@doc_data["metadata_keys"])
  @duration_keys to_atoms.(@doc_data["duration_keys_ns"])

  @typedoc "One catalog entry."
  @type entry :: %{
          event: [atom],
          layer: :infrastructure | :python | :grpc,
          python_name: String.t() | nil,
          measurements: [atom],
          metadata: [atom],
          emitted: boolean,
          sent: %{measurements: [atom], metadata: [atom]} | nil,
          reserved: String.t() | nil
        }

  @doc "Path of the catalog file."
  @spec path() :: Path.t()
  def path, do: @path

  @doc "The catalog's format version."
  @spec version() :: pos_integer
  def version, do: unquote(@doc_data["version"])

  @doc """
  The unit of a measurement key (`:native` time units, `:byte`,
  `:millisecond`, `:count`, `:percent`, `:os_pid`), or `nil` for a key
  outside the catalog.
  """
  @spec unit(atom) :: atom | nil
  def unit(key), do: Map.get(@units, key)

  @doc "Every catalog entry, in file order."
  @spec entries() :: [entry]
  def entries, do: @events

  @doc """
  Bounds applied to worker input, e.g. `%{max_metadata_value_bytes: 4096, ...}`.
  Rust enforces them on ingest; Elixir applies the same ones in `SafeMetadata`.
  """
  @spec limits() :: %{atom => pos_integer}
  def limits, do: @limits

  @doc """
  Defaults both ends of a worker's connection agree on: `max_frame_bytes`,
  `max_batch_events`, `max_delay_ms` and `tool_timeout_ms` (the Python worker
  reads the same section).
  """
  @spec defaults() :: %{atom => pos_integer}
  def defaults, do: @defaults

  @doc """
  The reasons a worker's event can be rejected for, as the atoms stats count
  them under (Rust's `Rejection::REASONS` is held to the same list).
  """
  @spec rejection_reasons() :: [atom]
  def rejection_reasons, do: @rejection_reasons

  @doc "Measurement keys that may become atoms."
  @spec measurement_keys() :: [atom]
  def measurement_keys, do: @measurement_keys

  @doc "Metadata keys that may become atoms."
  @spec metadata_keys() :: [atom]
  def metadata_keys, do: @metadata_keys

  @doc "Measurement keys that Python sends in nanoseconds (converted to native units)."
  @spec duration_keys() :: [atom]
  def duration_keys, do: @duration_keys

  @doc """
  Canonical summary (sorted lists of dotted event names, Python-name mappings
  and allowlisted keys); Rust's `catalog_summary` NIF and Python's
  `snakepit_bridge.catalog.summary()` produce the same data.
  """
  @spec summary() :: %{String.t() => [String.t()]}
  def summary do
    dotted = fn event -> Enum.map_join(event, ".", &Atom.to_string/1) end

    %{
      "events" => @events |> Enum.map(&dotted.(&1.event)) |> Enum.sort(),
      "python_map" =>
        for(%{python_name: py, event: e} <- @events, py, do: "#{py}=>#{dotted.(e)}")
        |> Enum.sort(),
      "measurement_keys" => @measurement_keys |> Enum.map(&Atom.to_string/1) |> Enum.sort(),
      "metadata_keys" => @metadata_keys |> Enum.map(&Atom.to_string/1) |> Enum.sort()
    }
  end
end
