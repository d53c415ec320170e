defmodule Snakepit.Telemetry.Events do
  @reference Snakepit.Telemetry.Events.Reference.build()

  @moduledoc """
  The reference of every `:telemetry` event Snakepit emits: its name,
  measurements with their units, and metadata, generated from the event
  catalog (`priv/catalog/telemetry_catalog.json`, the file the NIF validates
  against). `Snakepit.Telemetry.Naming.describe/1` gives the same for one
  event, from a program or `iex`.

  Attach as to any `:telemetry` event:

      :telemetry.attach("my-handler", [:snakepit, :python, :call, :stop],
        &MyApp.Telemetry.handle_event/4, nil)

  Times and durations are in native time units, as `:telemetry` users
  expect (`System.convert_time_unit(d, :native, :millisecond)`, or
  `unit: {:native, :millisecond}` in `Telemetry.Metrics`); Python's
  nanoseconds are converted on ingest.

  "always" lists what the library's own emitters send every time;
  "when the emitter gives them" lists the other keys the catalog accepts
  (a Python tool may add them to its own events). Every Python worker event
  also carries `node`, `worker_id`, `pool_name`, `python_pid`,
  `correlation_id` (`nil` outside a tool call) and `timestamp_ns` (listed
  under "always"). Keys outside the catalog arrive as strings, never as
  new atoms.

  #{@reference}
  """

  @doc "The reference as Markdown (what this module's documentation shows)."
  @spec reference() :: String.t()
  def reference, do: @reference
end
