# The stderr telemetry path, end to end:
#   a real Python process (priv/python/examples/stderr_emitter.py) emits spans
#   with the stderr backend -> TELEMETRY:{json} lines -> Rust parse + validate
#   -> :telemetry.execute/3 -> the handler attached below prints each event.
#
# Run with `make demo` (or `mix run examples/stderr_demo.exs`).

alias Snakepit.Telemetry.{Naming, PythonCapture}

defmodule Demo.Printer do
  @moduledoc false
  # A handler like an application would attach: one readable line per event.

  def handle([:snakepit, :python | name], measurements, meta, %{counts: counts}) do
    :ets.update_counter(counts, name, 1, {name, 0})

    IO.puts(
      "  #{IO.ANSI.cyan()}#{String.pad_trailing(Enum.join(name, "."), 26)}#{IO.ANSI.reset()}" <>
        " #{String.pad_trailing(meta.worker_id, 8)} corr=#{String.pad_trailing(meta.correlation_id || "-", 8)}" <>
        " #{format_measurements(measurements)}#{format_error(meta)}"
    )
  end

  defp format_measurements(m) do
    Enum.map_join(m, " ", fn
      {:duration, d} ->
        "duration=#{Float.round(System.convert_time_unit(d, :native, :microsecond) / 1000, 2)}ms"

      {:system_time, _} ->
        "system_time=…"

      {k, v} ->
        "#{k}=#{v}"
    end)
  end

  defp format_error(%{error_type: type, error_message: msg}),
    do: "  #{IO.ANSI.red()}#{type}: #{msg}#{IO.ANSI.reset()}"

  defp format_error(_), do: ""
end

counts = :ets.new(:demo_counts, [:public, :set])

:telemetry.attach_many(
  "stderr-demo-printer",
  Naming.python_events(),
  &Demo.Printer.handle/4,
  %{counts: counts}
)

script = Path.join(Snakepit.Python.package_dir(), "examples/stderr_emitter.py")

IO.puts(
  "\n#{IO.ANSI.bright()}Python (stderr backend) -> Rust NIF -> :telemetry#{IO.ANSI.reset()}"
)

IO.puts("  running #{Snakepit.Python.executable()} #{Path.relative_to_cwd(script)}\n")

{:ok, capture} =
  PythonCapture.start_link(
    executable: Snakepit.Python.executable(),
    args: [script, "--count", "4", "--delay-ms", "15"],
    env: Snakepit.Python.env(PYTHON_SNAKEPIT_TELEMETRY: "stderr"),
    context: %{worker_id: "demo_1", pool_name: :demo},
    notify: self()
  )

status =
  receive do
    {:python_capture_exit, ^capture, status} -> status
  after
    30_000 -> raise "the Python emitter did not finish within 30 s"
  end

stats = PythonCapture.stats()
IO.puts("\n#{IO.ANSI.bright()}Summary#{IO.ANSI.reset()} (python exit status #{status})")

for {name, n} <- :ets.tab2list(counts) |> Enum.sort() do
  IO.puts("  #{String.pad_trailing(Enum.join(name, "."), 28)} #{n}")
end

IO.puts("  events delivered: #{stats.events}, other output lines (to Logger): #{stats.log_lines}")
IO.puts("  malformed lines rejected: #{stats.malformed} #{inspect(stats.malformed_by_reason)}")

if status != 0 or stats.events == 0, do: System.halt(1)
