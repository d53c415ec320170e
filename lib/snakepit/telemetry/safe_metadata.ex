defmodule Snakepit.Telemetry.SafeMetadata do
  @moduledoc """
  Makes metadata from untrusted sources safe to put in a `:telemetry` event.

  * Keys in the catalog's metadata allowlist become atoms (atoms that already
    exist); every other key stays a string. No atom is ever created.
  * Values follow the value rules every path follows
    (`priv/catalog/value_rules.json`): strings are truncated to the catalog
    limit `max_metadata_value_bytes` (4096) on a UTF-8 boundary; booleans,
    integers and floats become their text (`"true"`, `"3"`, floats as Python
    writes them, see `float_text/1`); an entry whose value is `nil` is left
    out.
  * Other atoms and pids pass through (they are safe terms); any other term
    is replaced by its (bounded) `inspect/1` text.
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
      %{:tool => "predict", "x-custom" => "1"}
  """
  @spec sanitize(map | keyword) :: map
  def sanitize(metadata) when is_map(metadata) or is_list(metadata) do
    metadata
    |> Enum.reject(fn {_k, v} -> is_nil(v) end)
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
  defp value(v) when is_boolean(v), do: Atom.to_string(v)
  defp value(v) when is_integer(v), do: Integer.to_string(v)
  defp value(v) when is_float(v), do: float_text(v)
  defp value(v) when is_atom(v) or is_pid(v), do: v
  defp value(v), do: v |> inspect(limit: 50, printable_limit: @max_value) |> truncate()

  @doc """
  A float as metadata text, as Python's `repr` writes it (the rule of
  `priv/catalog/value_rules.json`, which Python and Rust follow too): the
  shortest digits that read back as the same float; exponent notation below
  1.0e-4 and from 1.0e16, with a sign and at least two exponent digits; else
  fixed notation with at least one decimal.

      iex> Enum.map([1.0e20, 1.5e-7, 100.0, 0.1], &Snakepit.Telemetry.SafeMetadata.float_text/1)
      ["1e+20", "1.5e-07", "100.0", "0.1"]
  """
  @spec float_text(float) :: String.t()
  def float_text(f) when is_float(f) do
    <<negative::1, _::63>> = <<f::float>>
    sign = if negative == 1, do: "-", else: ""
    # Erlang's shortest round-trip text: "1.0e20", "0.0001", "1.5e-7".
    {mantissa, exp} =
      case String.split(:erlang.float_to_binary(abs(f), [:short]), "e") do
        [m, e] -> {m, String.to_integer(e)}
        [m] -> {m, 0}
      end

    [int, frac] = String.split(mantissa, ".")
    {digits, point} = significant(int <> frac, byte_size(int) + exp)
    sign <> layout(digits, point)
  end

  # Digits without leading or trailing zeros and the place of the point
  # (digits before it; "0" for zero).
  defp significant(digits, point) do
    trimmed = String.trim_leading(digits, "0")
    point = point - (byte_size(digits) - byte_size(trimmed))

    case String.trim_trailing(trimmed, "0") do
      "" -> {"0", 1}
      d -> {d, point}
    end
  end

  defp layout(digits, point) when point - 1 < -4 or point - 1 >= 16 do
    {first, rest} = String.split_at(digits, 1)
    dot = if rest == "", do: "", else: "."
    exp = point - 1
    exp_sign = if exp < 0, do: "-", else: "+"
    exp_text = exp |> abs() |> Integer.to_string() |> String.pad_leading(2, "0")
    first <> dot <> rest <> "e" <> exp_sign <> exp_text
  end

  defp layout(digits, point) when point <= 0,
    do: "0." <> String.duplicate("0", -point) <> digits

  defp layout(digits, point) when point < byte_size(digits) do
    {int, frac} = String.split_at(digits, point)
    int <> "." <> frac
  end

  defp layout(digits, point),
    do: digits <> String.duplicate("0", point - byte_size(digits)) <> ".0"

  defp blank_to_nil(nil), do: nil

  defp blank_to_nil(s) when is_binary(s) do
    if String.trim(s) == "", do: nil, else: s
  end

  defp blank_to_nil(other), do: other
end
