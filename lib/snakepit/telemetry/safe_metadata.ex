defmodule Snakepit.Telemetry.SafeMetadata do
  @moduledoc """
  Makes metadata from untrusted sources safe to put in a `:telemetry` event.

  * Keys in the catalog's metadata allowlist become atoms (atoms that already
    exist); every other key stays a string. No atom is ever created.
  * String values are truncated to the catalog limit
    `max_metadata_value_bytes` (4096) on a UTF-8 boundary.
  * Numbers, booleans, `nil`, atoms and pids pass through; any other term is
    replaced by its (bounded) `inspect/1` text.
  * At most `max_metadata` (64) entries are kept.

  Worker events are validated the same way in Rust; this module serves
  Elixir-side callers (and the enrichment every event receives).
  """

  alias Snakepit.Telemetry.{Catalog, Naming}

  @max_value Catalog.limits().max_metadata_value_bytes
  @max_entries Catalog.limits().max_metadata

  @typedoc "The worker context an event is enriched with."
  @type context :: %{
          optional(:worker_id) => String.t(),
          optional(:pool_name) => atom | String.t(),
          optional(:python_pid) => integer | nil,
          optional(:correlation_id) => String.t() | nil,
          optional(:timestamp_ns) => integer
        }

  @doc """
  Returns a copy of `metadata` with safe keys and bounded values.

      iex> Snakepit.Telemetry.SafeMetadata.sanitize(%{"tool" => "predict", "x-custom" => 1})
      %{:tool => "predict", "x-custom" => 1}
  """
  @spec sanitize(map | keyword) :: map
  def sanitize(metadata) when is_map(metadata) or is_list(metadata) do
    metadata
    |> Enum.map(fn {k, v} -> {key(k), value(v)} end)
    |> Enum.sort()
    |> Enum.take(@max_entries)
    |> Map.new()
  end

  @doc """
  Adds what every event carries: `node`, `worker_id`, `pool_name`,
  `python_pid`, `correlation_id` (`nil` when blank) and `timestamp_ns`.

  Values from `context` win over same-named entries of `metadata`, except
  `correlation_id` and `timestamp_ns`, which the event's own values win when
  present (they describe the event, not the worker).
  """
  @spec enrich(map, context | keyword) :: map
  def enrich(metadata, context) when is_map(metadata) do
    context = Map.new(context)

    metadata
    |> Map.merge(%{
      node: node(),
      worker_id: context[:worker_id],
      pool_name: context[:pool_name],
      python_pid: context[:python_pid]
    })
    |> Map.put(
      :correlation_id,
      blank_to_nil(metadata[:correlation_id]) || blank_to_nil(context[:correlation_id])
    )
    |> Map.put(
      :timestamp_ns,
      metadata[:timestamp_ns] || context[:timestamp_ns] || System.system_time(:nanosecond)
    )
  end

  @doc "Sanitizes both maps and merges them; entries of `extra` win."
  @spec merge(map | keyword, map | keyword) :: map
  def merge(base, extra), do: base |> sanitize() |> Map.merge(sanitize(extra)) |> sanitize()

  @doc "Truncates a binary to at most `max` bytes without splitting a UTF-8 character."
  @spec truncate(binary, non_neg_integer) :: binary
  def truncate(bin, max \\ @max_value)
  def truncate(bin, max) when byte_size(bin) <= max, do: bin

  def truncate(bin, max) do
    cut = binary_part(bin, 0, max)
    if String.valid?(bin), do: back_to_boundary(cut, 3), else: cut
  end

  defp back_to_boundary(cut, tries) do
    cond do
      String.valid?(cut) or tries == 0 -> cut
      true -> back_to_boundary(binary_part(cut, 0, byte_size(cut) - 1), tries - 1)
    end
  end

  defp key(k) when is_binary(k) or is_atom(k), do: Naming.metadata_key(k)
  defp key(k) when is_number(k), do: to_string(k)
  defp key(k), do: k |> inspect() |> truncate(Catalog.limits().max_key_bytes)

  defp value(v) when is_binary(v), do: truncate(v)
  defp value(v) when is_number(v) or is_atom(v) or is_pid(v), do: v
  defp value(v), do: v |> inspect(limit: 50, printable_limit: @max_value) |> truncate()

  defp blank_to_nil(nil), do: nil

  defp blank_to_nil(s) when is_binary(s) do
    if String.trim(s) == "", do: nil, else: s
  end

  defp blank_to_nil(other), do: other
end
