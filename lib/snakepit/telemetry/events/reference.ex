defmodule Snakepit.Telemetry.Events.Reference do
  @moduledoc false
  # Builds the Markdown of Snakepit.Telemetry.Events from the catalog, at
  # that module's compile time, so it cannot drift from what the NIF
  # validates; test/snakepit/docs/event_reference_test.exs holds it to what
  # actually arrives.
  alias Snakepit.Telemetry.{Catalog, Naming}

  @layers [
    infrastructure: "Pool and worker events (emitted by Elixir)",
    python: "Python worker events (emitted in the worker, validated by the NIF)",
    grpc: "gRPC bridge events (tool calls, and the telemetry stream of each worker)"
  ]

  @unit_text %{
    native: "native time units",
    byte: "bytes",
    millisecond: "milliseconds",
    count: "a count",
    percent: "percent of one core (psutil; above 100 with several busy threads)",
    os_pid: "an OS process id"
  }

  @doc """
  The reference as Markdown; `application` (entries of
  `Snakepit.Telemetry.AppEvents`) adds a section for the application's events.
  """
  def build(application \\ []) do
    entries = Enum.map(Catalog.entries(), &Naming.describe(&1.event))
    {emitted, reserved} = Enum.split_with(entries, & &1.emitted)

    sections =
      for {layer, title} <- @layers,
          group = Enum.filter(emitted, &(&1.layer == layer)),
          group != [] do
        ["## #{title}\n\n" | Enum.map(group, &entry/1)]
      end

    app =
      if application == [],
        do: [],
        else: [
          "## Application events (`config :snakepit_telemetry, events: ...`)\n\n",
          Enum.map(application, &entry(Naming.describe_entry(&1)))
        ]

    IO.iodata_to_binary([
      sections,
      app,
      "## Reserved (in the catalog, not emitted by this library)\n\n",
      "Names kept from Snakepit's own pool and session store, so handlers written for it ",
      "attach without error. Reserved: they never fire here.\n\n",
      Enum.map(reserved, &reserved/1)
    ])
  end

  defp entry(e) do
    [
      heading(e),
      "Measurements:\n\n",
      keys(e.measurements, e.sent.measurements, &measurement/1),
      "\nMetadata:\n\n",
      keys(e.metadata, e.sent.metadata, &"`#{&1}`"),
      "\n"
    ]
  end

  defp reserved(e), do: [heading(e), "Reserved: #{e.reserved}.\n\n"]

  defp heading(%{python_name: nil} = e), do: "### `#{inspect(e.event)}`\n\n"

  defp heading(e),
    do: "### `#{inspect(e.event)}`\n\nPython name: `#{e.python_name}`.\n\n"

  defp keys(all, sent, format) do
    optional = all -- sent

    [
      if(sent == [], do: [], else: ["  * always: ", Enum.map_join(sent, ", ", format), "\n"]),
      if(optional == [],
        do: [],
        else: ["  * when the emitter gives them: ", Enum.map_join(optional, ", ", format), "\n"]
      ),
      if(all == [], do: "  * none\n", else: [])
    ]
  end

  defp measurement(key) do
    case Catalog.unit(key) do
      nil -> "`#{key}` (as the application sends it)"
      unit -> "`#{key}` (#{Map.fetch!(@unit_text, unit)})"
    end
  end
end
