defmodule SnakepitBench.Report do
  @moduledoc false
  # Figures -> the printed table (with the command line and parameters of
  # every figure) and the JSON report.

  @doc """
  A figure: `id`, `label`, `value` (nil when not measured), `unit` (:eps,
  :ns, :latency_ns, :bytes, :count, :ratio, :pct), `case` (key into the
  cases' setups), optional `target: {:ge | :le, number}` and `note`.
  """
  def figure(id, label, value, unit, case_key, opts \\ []) do
    %{
      id: id,
      label: label,
      value: value,
      unit: unit,
      case: case_key,
      target: opts[:target],
      note: opts[:note]
    }
    |> evaluate()
  end

  defp evaluate(%{target: nil} = f), do: Map.merge(f, %{met: nil, ratio: nil})
  defp evaluate(%{value: nil} = f), do: Map.merge(f, %{met: false, ratio: nil})

  defp evaluate(%{target: {op, t}, value: v} = f) do
    met = if op == :ge, do: v >= t, else: v <= t
    Map.merge(f, %{met: met, ratio: if(t != 0, do: v / t)})
  end

  ## The table

  def print(figures, setups, cpu_rows, meta) do
    IO.puts("")
    IO.puts("Snakepit telemetry benchmarks  (#{meta.machine})")
    IO.puts(String.duplicate("=", 118))

    rows =
      for f <- figures do
        [f.id, f.label, format(f.value, f.unit), target(f), result(f)]
      end

    table(["id", "figure", "value", "target", "result"], rows)
    |> Enum.each(&IO.puts/1)

    notes = for f <- figures, f.note, do: "  #{f.id}: #{f.note}"
    if notes != [], do: IO.puts(["\nNotes:\n", Enum.join(notes, "\n")])

    if cpu_rows != [] do
      IO.puts("""

      Throughput runs: CPU per stage. Cores used in the window (of #{meta.cores}) per thread group,
      from /proc/<pid>/task/*/stat (BEAM threads include scheduler busy-wait; "not ours" = machine
      busy time from /proc/stat used by other processes: > 0.1 means the figures were disturbed);
      CPU µs per event;
      swt = scheduler_wall_time active ns per event (normal / dirty-CPU schedulers).\
      """)

      table(
        [
          "run",
          "ev/s",
          "÷ bare",
          "cores: loadgen",
          "NIF ingest",
          "BEAM sched",
          "BEAM dirty",
          "BEAM other",
          "not ours",
          "µs/ev: loadgen",
          "NIF ingest",
          "BEAM",
          "swt ns/ev",
          "dirty ns/ev",
          "ev/batch",
          "mailbox max"
        ],
        cpu_rows
      )
      |> Enum.each(&IO.puts/1)
    end

    IO.puts("\nCommand line and parameters of every figure")

    for {key, setup} <- setups do
      ids = for f <- figures, f.case == key, do: f.id
      IO.puts("  [#{Enum.join(ids, " ")}] #{key}")
      IO.puts("      $ #{setup.command}")
      IO.puts("      #{setup.params}")
    end

    met = Enum.count(figures, &(&1.met == true))
    missed = Enum.count(figures, &(&1.met == false))
    IO.puts("\nTargets: #{met} met, #{missed} missed.  Report: #{meta.report_path}")
  end

  defp target(%{target: nil}), do: ""
  defp target(%{target: {:ge, t}, unit: u}), do: "≥ " <> format(t, u)
  defp target(%{target: {:le, t}, unit: u}), do: "≤ " <> format(t, u)

  defp result(%{met: nil}), do: ""
  defp result(%{value: nil}), do: "MISSED (not measured)"
  # A target of zero has no ratio.
  defp result(%{met: met, ratio: nil}), do: if(met, do: "met", else: "MISSED")
  defp result(%{met: true, ratio: r}), do: "met (#{ratio(r)} of target)"
  defp result(%{met: false, ratio: r}), do: "MISSED (#{ratio(r)} of target)"

  defp ratio(r), do: :erlang.float_to_binary(r / 1, decimals: 2) <> "×"

  def table(header, rows) do
    widths =
      Enum.reduce([header | rows], List.duplicate(0, length(header)), fn row, ws ->
        Enum.zip_with(row, ws, &max(String.length(to_string(&1)), &2))
      end)

    line = fn row ->
      row
      |> Enum.zip(widths)
      |> Enum.map_join("  ", fn {cell, w} -> String.pad_trailing(to_string(cell), w) end)
      |> String.trim_trailing()
    end

    sep = Enum.map_join(widths, "  ", &String.duplicate("-", &1))
    [line.(header), sep | Enum.map(rows, line)]
  end

  ## Values

  def format(nil, _), do: "n/a"
  def format(v, :eps), do: "#{thousands(round(v))} ev/s"
  def format(v, :ns), do: "#{thousands(round(v))} ns"
  def format(v, :count), do: thousands(round(v))
  def format(v, :ratio), do: :erlang.float_to_binary(v / 1, decimals: 3)
  def format(v, :pct), do: :erlang.float_to_binary(v / 1, decimals: 1) <> " %"
  def format(v, :bytes) when abs(v) >= 1024 * 1024, do: dec(v / 1_048_576, 2) <> " MiB"
  def format(v, :bytes), do: dec(v / 1024, 1) <> " KiB"
  def format(v, :latency_ns) when v >= 1_000_000, do: dec(v / 1.0e6, 2) <> " ms"
  def format(v, :latency_ns), do: dec(v / 1.0e3, 1) <> " µs"

  def dec(v, d), do: :erlang.float_to_binary(v / 1, decimals: d)

  def thousands(n) when n < 0, do: "-" <> thousands(-n)

  def thousands(n) do
    n
    |> Integer.to_string()
    |> String.reverse()
    |> String.replace(~r/(\d{3})(?=\d)/, "\\1,")
    |> String.reverse()
  end

  ## JSON

  def write_json(path, data) do
    File.mkdir_p!(Path.dirname(path))
    File.write!(path, [json(data), "\n"])
  end

  def json(nil), do: "null"
  def json(true), do: "true"
  def json(false), do: "false"
  def json(v) when is_atom(v), do: json(Atom.to_string(v))
  def json(v) when is_integer(v), do: Integer.to_string(v)
  def json(v) when is_float(v), do: :erlang.float_to_binary(v, [:short])
  def json(v) when is_binary(v), do: [?", escape(v), ?"]
  def json({op, v}) when op in [:ge, :le], do: json(%{op: op, value: v})
  def json(v) when is_tuple(v), do: json(Tuple.to_list(v))
  def json(v) when is_list(v), do: [?[, Enum.map_intersperse(v, ?,, &json/1), ?]]

  def json(v) when is_map(v) do
    pairs =
      v
      |> Enum.sort_by(&to_string(elem(&1, 0)))
      |> Enum.map(fn {k, x} -> [json(to_string(k)), ?:, json(x)] end)

    [?{, Enum.intersperse(pairs, ?,), ?}]
  end

  defp escape(s) do
    for <<c::utf8 <- s>>, into: "" do
      case c do
        ?" -> "\\\""
        ?\\ -> "\\\\"
        ?\n -> "\\n"
        c when c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
        c -> <<c::utf8>>
      end
    end
  end
end
