defmodule Snakepit.Test.WireEvents do
  @moduledoc false
  # Generated telemetry events as protobuf bytes (TelemetryEvent inside
  # TelemetryEventBatch frames), for the ingest property test: every wire
  # type, values at and past each edge (int64 limits, NaN/inf/1e300 bit
  # patterns, numeric strings), keys and strings around each limit, invalid
  # UTF-8, and now and then an event of random bytes. Seeded :rand, so a
  # failure names its seed.

  import Bitwise

  alias Snakepit.Telemetry.Catalog

  @limits Catalog.limits()

  @doc "`n` generated events (binaries) for `seed`."
  def generate(n, seed) do
    :rand.seed(:exsss, {seed, seed * 7 + 1, seed * 13 + 2})
    for _ <- 1..n, do: event()
  end

  @doc "Batch frames of at most `per_frame` events each, with running totals."
  def frames(events, per_frame, source_id) do
    events
    |> Enum.chunk_every(per_frame)
    |> Enum.map_reduce(0, fn chunk, sent ->
      sent = sent + length(chunk)
      body = Enum.map(chunk, &len_field(1, &1))
      {IO.iodata_to_binary([body, varint_field(3, sent), varint_field(7, source_id)]), sent}
    end)
    |> elem(0)
  end

  @doc "Frames as the replay peer reads them: 4-byte length, then the frame."
  def frames_file(frames), do: Enum.map(frames, &[<<byte_size(&1)::32>>, &1])

  defp event do
    if :rand.uniform(20) == 1 do
      :rand.bytes(:rand.uniform(64))
    else
      IO.iodata_to_binary([
        Enum.map(name_parts(), &len_field(1, &1)),
        Enum.map(entries(measurement_keys(), @limits.max_measurements), fn k ->
          len_field(2, [len_field(1, k), len_field(2, value())])
        end),
        Enum.map(entries(metadata_keys(), @limits.max_metadata), fn k ->
          len_field(3, [len_field(1, k), len_field(2, text())])
        end),
        varint_field(4, pick([0, 1_700_000_000_000_000_000, -1, 2 ** 63 - 1, -(2 ** 63)])),
        len_field(5, correlation_id())
      ])
    end
  end

  defp name_parts do
    case :rand.uniform(40) do
      n when n <= 36 -> String.split(pick(python_names()), ".")
      37 -> ["python", "unknown_#{:rand.uniform(100)}"]
      38 -> List.duplicate("part", 9)
      39 -> ["python", <<0xFF, 0xFE>>, "stop"]
      40 -> []
    end
  end

  defp entries(allowlist, max) do
    n = pick([0, 1, 2, 3, 5, 8] ++ if(:rand.uniform(10) == 1, do: [max, max + 1], else: []))

    Enum.map(1..n//1, fn i ->
      case :rand.uniform(200) do
        k when k <= 150 -> pick(allowlist)
        k when k <= 190 -> "custom_#{i}"
        191 -> ""
        k when k <= 194 -> String.duplicate("k", @limits.max_key_bytes)
        k when k <= 197 -> String.duplicate("k", @limits.max_key_bytes + 1)
        _ -> <<0xC3, 0x28>>
      end
    end)
  end

  # A TelemetryValue's fields (or none: a value without its oneof).
  defp value do
    case :rand.uniform(11) do
      1 -> varint_field(1, pick([0, 1, -1, 2 ** 63 - 1, -(2 ** 63), :rand.uniform(10 ** 12)]))
      2 -> double_field(pick([0x7FF8000000000000, 0x7FF0000000000000, 0xFFF0000000000000]))
      3 -> double_field(bits(pick([1.0e300, -1.0e300, 1.7976931348623157e308, 5.0e-324])))
      4 -> double_field(bits(:rand.uniform() * 1.0e6))
      5 -> len_field(3, pick(["1e300", "-1e400", "42", " 7 ", "NaN", "inf", "x", ""]))
      6 -> []
      _ -> varint_field(1, :rand.uniform(1_000_000))
    end
  end

  defp text do
    case :rand.uniform(100) do
      k when k <= 2 -> String.duplicate("v", @limits.max_metadata_value_bytes + pick([-1, 0, 1]))
      k when k <= 4 -> String.duplicate("é", div(@limits.max_metadata_value_bytes, 2) + 1)
      5 -> <<0xFF, ?a>>
      k when k <= 10 -> ""
      _ -> "v#{:rand.uniform(1000)}"
    end
  end

  defp correlation_id do
    case :rand.uniform(40) do
      1 -> String.duplicate("c", @limits.max_correlation_id_bytes + pick([0, 1]))
      2 -> "   "
      3 -> <<0xFF>>
      _ -> "req-#{:rand.uniform(1000)}"
    end
  end

  defp python_names, do: Map.keys(Snakepit.Telemetry.Naming.python_event_catalog())
  defp measurement_keys, do: Enum.map(Catalog.measurement_keys(), &Atom.to_string/1)
  defp metadata_keys, do: Enum.map(Catalog.metadata_keys(), &Atom.to_string/1)
  defp pick(list), do: Enum.random(list)
  defp bits(f), do: :binary.decode_unsigned(<<f::float-little-64>>, :little)

  defp len_field(n, payload) do
    payload = IO.iodata_to_binary(payload)
    [varint(n * 8 + 2), varint(byte_size(payload)), payload]
  end

  defp varint_field(n, v), do: [varint(n * 8), varint(v)]
  defp double_field(bits), do: [varint(2 * 8 + 1), <<bits::little-64>>]

  # Base-128 varint; negative int64 values as their two's complement.
  defp varint(v) when v < 0, do: varint(v + 2 ** 64)
  defp varint(v) when v < 128, do: <<v>>
  defp varint(v), do: <<1::1, v::7, varint(v >>> 7)::binary>>
end
