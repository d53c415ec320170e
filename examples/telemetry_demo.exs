# Snakepit telemetry, end to end, as an application would use it:
#
#   a pool of 2 real Python workers (priv/python/grpc_server.py)
#     -> their telemetry over gRPC (StreamTelemetryBatched)
#     -> the Rust NIF (decode, validate, enrich, batch, credit)
#     -> Snakepit.Telemetry.GrpcStream -> :telemetry handlers attached below
#
# then run-time control from Elixir (sampling, filters, toggle) taking effect
# live, a summary table, each stream's stats, and a clean shutdown.
#
# Run with `make demo` (or `mix run examples/telemetry_demo.exs`).

alias Snakepit.{GRPCWorker, Pool}
alias Snakepit.Telemetry.{GrpcStream, Naming}

defmodule Demo.Recorder do
  @moduledoc false
  # The handler an application would attach: records every event and, while
  # `live?` is on, prints one readable line per event.

  @table :demo_events

  def setup do
    :ets.new(@table, [:named_table, :public, :duplicate_bag])
    :persistent_term.put({__MODULE__, :live}, true)
  end

  def live(on?), do: :persistent_term.put({__MODULE__, :live}, on?)

  def handle_event(event, measurements, meta, _config) do
    worker = meta[:worker_id] || "-"
    :ets.insert(@table, {{event, worker}, measurements[:duration], meta[:correlation_id]})
    if :persistent_term.get({__MODULE__, :live}), do: IO.puts(line(event, measurements, meta))
  end

  def count(filter \\ fn _ -> true end) do
    :ets.foldl(fn {{event, _}, _, _}, n -> if filter.(event), do: n + 1, else: n end, 0, @table)
  end

  def reset, do: :ets.delete_all_objects(@table)

  def count_burst,
    do: :ets.select_count(@table, [{{{:_, :_}, :_, :"$1"}, [{:==, :"$1", "burst"}], [true]}])

  def summary do
    :ets.tab2list(@table)
    |> Enum.group_by(fn {key, _, _} -> key end, fn {_, d, _} -> d end)
    |> Enum.sort()
  end

  defp line(event, m, meta) do
    name = event |> Enum.drop(1) |> Enum.join(".")
    color = if match?([:snakepit, :python | _], event), do: IO.ANSI.cyan(), else: IO.ANSI.yellow()
    corr = meta[:correlation_id] && "corr=#{meta.correlation_id}"

    details =
      m
      |> Enum.reject(fn {k, _} -> k in [:system_time, :monotonic_time] end)
      |> Enum.map_join(" ", fn
        {k, v} when k in [:duration, :lifetime, :uptime, :downtime, :network_time] ->
          "#{k}=#{ms(v)}"

        {k, v} when is_float(v) ->
          "#{k}=#{Float.round(v, 2)}"

        {k, v} ->
          "#{k}=#{v}"
      end)

    extra =
      if meta[:error_type],
        do: " #{IO.ANSI.red()}#{meta.error_type}: #{meta[:error_message]}",
        else: ""

    "  #{color}#{String.pad_trailing(name, 30)}#{IO.ANSI.reset()} " <>
      "#{String.pad_trailing(to_string(meta[:worker_id] || ""), 10)}" <>
      "#{String.pad_trailing(corr || "", 22)} #{details}#{extra}#{IO.ANSI.reset()}"
  end

  def ms(native),
    do: "#{Float.round(System.convert_time_unit(native, :native, :microsecond) / 1000, 2)}ms"
end

defmodule Demo do
  @moduledoc false
  def heading(text), do: IO.puts("\n#{IO.ANSI.bright()}== #{text}#{IO.ANSI.reset()}")

  # Controls travel on the telemetry stream: wait until the worker applied it.
  def await_state(worker, fun) do
    Enum.reduce_while(1..100, nil, fn _, _ ->
      {:ok, state} = GRPCWorker.execute(worker, "telemetry_state", %{})
      if fun.(state), do: {:halt, state}, else: Process.sleep(20) && {:cont, nil}
    end)
  end

  # Counts the burst's own events (tagged with their correlation id), not
  # the events of the call that asked for them.
  def burst(worker, n) do
    Demo.Recorder.reset()
    params = %{count: n, event: "python.call.start", correlation_id: "burst"}
    {:ok, _} = GRPCWorker.execute(worker, "emit_events", params)
    # Give the stream a moment to drain what the worker sent.
    Process.sleep(300)
    Demo.Recorder.count_burst()
  end

  def percentile([], _), do: nil

  def percentile(values, p) do
    sorted = Enum.sort(values)
    Enum.at(sorted, min(length(sorted) - 1, trunc(p * length(sorted))))
  end
end

started_at = System.monotonic_time(:millisecond)
Demo.Recorder.setup()

# 1. Attach handlers the way an application does.
:telemetry.attach_many(
  "demo-recorder",
  Naming.python_events() ++ Naming.grpc_events() ++ Naming.infrastructure_events(),
  &Demo.Recorder.handle_event/4,
  nil
)

Demo.heading("Starting a pool of 2 Python workers")

{:ok, _} =
  Pool.start_link(
    name: :demo,
    size: 2,
    status_interval: nil,
    worker_args: ["--sample-interval-ms", "1000"],
    # The demo's tools (telemetry_demo, emit_events, fail, ...).
    demo_tools: true
  )

Process.sleep(200)
[w1, w2] = Pool.workers(:demo)
{:ok, %{id: id1}} = GRPCWorker.info(w1)
{:ok, %{id: id2}} = GRPCWorker.info(w2)

Demo.heading("telemetry_demo calls with correlation ids (live events)")

for i <- 1..4 do
  corr = "req-#{i}"

  # Pool.execute/4: check a worker out, call, check it in.
  {:ok, result} =
    Pool.execute(:demo, "telemetry_demo", %{operation: "op#{i}", delay_ms: 20 * i},
      correlation_id: corr
    )

  IO.puts("  #{IO.ANSI.green()}-> #{corr} returned #{inspect(result)}#{IO.ANSI.reset()}")
end

{:error, reason} = GRPCWorker.execute(w1, "fail", %{}, correlation_id: "req-fail")
IO.puts("  #{IO.ANSI.red()}-> req-fail returned {:error, #{inspect(reason)}}#{IO.ANSI.reset()}")
Process.sleep(300)

Demo.Recorder.live(false)
Demo.heading("Run-time control on #{id1}, from Elixir, without restarting it")
IO.puts("  burst of 1000 python.call.start events: #{Demo.burst(w1, 1000)} delivered")

:ok = GrpcStream.update_sampling(id1, 0.1)
Demo.await_state(w1, &(&1["sampling_rate"] == 0.1))

IO.puts(
  "  update_sampling(#{inspect(id1)}, 0.1)  -> burst of 1000: #{Demo.burst(w1, 1000)} delivered"
)

:ok = GrpcStream.update_sampling(id1, 1.0)
:ok = GrpcStream.update_filter(id1, deny: ["python.call.*"])
Demo.await_state(w1, &(&1["deny"] == ["python.call.*"]))

IO.puts(
  "  update_filter(#{inspect(id1)}, deny: [\"python.call.*\"]) -> burst of 1000: #{Demo.burst(w1, 1000)} delivered"
)

:ok = GrpcStream.update_filter(id1, allow: [], deny: [])
:ok = GrpcStream.toggle(id1, false)
Demo.await_state(w1, &(&1["enabled"] == false))

IO.puts(
  "  toggle(#{inspect(id1)}, false)       -> burst of 1000: #{Demo.burst(w1, 1000)} delivered"
)

:ok = GrpcStream.toggle(id1, true)
Demo.await_state(w1, &(&1["enabled"] == true))

IO.puts(
  "  toggle(#{inspect(id1)}, true)        -> burst of 1000: #{Demo.burst(w1, 1000)} delivered"
)

IO.puts("  (#{id2} was never touched: its settings are its own)")

Demo.Recorder.reset()
Demo.heading("More calls on both workers, recorded for the summary")

for i <- 1..10 do
  worker = if rem(i, 2) == 0, do: w1, else: w2

  {:ok, _} =
    GRPCWorker.execute(worker, "telemetry_demo", %{
      operation: "summary",
      delay_ms: 5 + rem(i, 3) * 5
    })
end

Process.sleep(1_200)

Demo.heading("Summary per event and worker")

IO.puts(
  "  #{String.pad_trailing("event", 40)} #{String.pad_trailing("worker", 10)} #{String.pad_leading("count", 6)} #{String.pad_leading("p50", 10)} #{String.pad_leading("p99", 10)}"
)

for {{event, worker}, durations} <- Demo.Recorder.summary() do
  ds = Enum.reject(durations, &is_nil/1)

  fmt = fn
    nil -> "-"
    d -> Demo.Recorder.ms(d)
  end

  IO.puts(
    "  #{String.pad_trailing(event |> Enum.drop(1) |> Enum.join("."), 40)} #{String.pad_trailing(worker, 10)} " <>
      "#{String.pad_leading(to_string(length(durations)), 6)} #{String.pad_leading(fmt.(Demo.percentile(ds, 0.5)), 10)} " <>
      "#{String.pad_leading(fmt.(Demo.percentile(ds, 0.99)), 10)}"
  )
end

Demo.heading("Stream stats (GrpcStream.list_streams/0)")

for s <- GrpcStream.list_streams() do
  IO.puts(
    "  #{s.worker_id}: #{s.state} via #{s.rpc}, delivered=#{s.events_delivered} rejected=#{s.rejected} " <>
      "python_dropped=#{s.python_dropped} reconnects=#{s.reconnects}"
  )
end

Demo.heading("Shutdown")
%{python_pids: pids} = Pool.status(:demo)
:ok = Pool.stop(:demo)

alive =
  Enum.filter(pids, fn pid ->
    match?({_, 0}, System.cmd("kill", ["-0", "#{pid}"], stderr_to_stdout: true))
  end)

IO.puts("  pool stopped; python pids #{inspect(pids)} alive afterwards: #{inspect(alive)}")
IO.puts("  done in #{System.monotonic_time(:millisecond) - started_at} ms")
if alive != [], do: System.halt(1)
