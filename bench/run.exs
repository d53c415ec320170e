# Benchmarks of the telemetry path: `make bench` (or `mix run bench/run.exs`).
#
#   mix run bench/run.exs [--quick] [--out _build/bench/report.json]
#       [--only a,b,d,e,f] [--streams 1,16,256] [--rpcs batched,stock]
#       [--max-batch N] [--lg-batch N] [--max-delay-ms 5,100,250]
#
# Prints a table of figures with their targets, the CPU used per stage, and
# the command line / parameters of every figure; writes a JSON report.
# --quick shortens every window (a smoke test, not for comparisons). --only
# runs some sections (a includes c and the mailbox figures of e; e alone is
# the idle-memory case). --max-batch / --lg-batch change the batch sizes of
# the throughput runs (register_worker :max_batch, loadgen --batch), for
# experiments; ERL_FLAGS passes VM flags (recorded in the report);
# BENCH_PY_ARGS adds flags to the worker of (h), e.g. "--max-batch 2048",
# and SNAKEPIT_BRIDGE_PURE_PYTHON=1 runs the workers without the native
# encoder.

for file <- ~w(external probe report cases),
    do: Code.require_file("support/#{file}.ex", __DIR__)

alias SnakepitBench.{Cases, Report}

{opts, _} =
  OptionParser.parse!(System.argv(),
    strict: [
      quick: :boolean,
      out: :string,
      only: :string,
      streams: :string,
      rpcs: :string,
      max_batch: :integer,
      lg_batch: :integer,
      max_delay_ms: :string
    ]
  )

quick = opts[:quick] || false
out = opts[:out] || "_build/bench/report.json"
sections = String.split(opts[:only] || "a,b,d,e,f,g,h", ",", trim: true)
on? = &(&1 in sections)
ints = fn text -> text |> String.split(",", trim: true) |> Enum.map(&String.to_integer/1) end
stream_counts = ints.(opts[:streams] || "1,16,64,256")

rpcs =
  (opts[:rpcs] || "batched,stock")
  |> String.split(",", trim: true)
  |> Enum.map(&String.to_existing_atom/1)

tp_opts =
  Keyword.take([max_batch: opts[:max_batch], loadgen_batch: opts[:lg_batch]], [
    :max_batch,
    :loadgen_batch
  ])
  |> Enum.reject(&is_nil(elem(&1, 1)))

scale = if quick, do: 0.3, else: 1.0
ms = fn n -> round(n * scale) end

Logger.configure(level: :warning)
:erlang.system_flag(:scheduler_wall_time, true)
started = System.monotonic_time(:millisecond)

warmup = ms.(2_000)
window = ms.(5_000)
idle_streams = 1_024

machine =
  "#{System.schedulers_online()} cores, OTP #{System.otp_release()} " <>
    "#{:erlang.system_info(:emu_flavor)}, Elixir #{System.version()}, " <>
    "ERL_FLAGS=#{inspect(System.get_env("ERL_FLAGS", ""))}" <>
    if(quick, do: ", QUICK (windows x0.3)", else: "")

# The machine's cores are shared: before each case, wait up to 15 s for other
# load to pass (at most 90 s in all), so that it does not skew the figures.
quiet_budget = :counters.new(1, [])
:counters.put(quiet_budget, 1, if(quick, do: 0, else: 90_000))

wait_quiet = fn ->
  left = :counters.get(quiet_budget, 1)
  waited = if left > 0, do: SnakepitBench.Probe.wait_quiet(min(left, 15_000)), else: 0
  :counters.sub(quiet_budget, 1, waited)
  waited
end

# Runs one case; a failure is reported and the other cases go on.
run = fn name, fun ->
  waited = wait_quiet.()
  IO.write(:stderr, "bench: #{name} ... ")
  if waited > 1_000, do: IO.write(:stderr, "(waited #{waited} ms for other load) ")
  t = System.monotonic_time(:millisecond)

  result =
    try do
      fun.()
    rescue
      e -> %{error: Exception.format(:error, e, __STACKTRACE__), command: "-", params: "-"}
    catch
      kind, reason -> %{error: inspect({kind, reason}), command: "-", params: "-"}
    end

  if result[:error], do: IO.write(:stderr, "FAILED\n#{result.error}\n")
  IO.write(:stderr, "#{System.monotonic_time(:millisecond) - t} ms\n")
  result
end

# Memory first: the BEAM's RSS has not yet grown with the throughput runs.
mem =
  on?.("e") &&
    run.("(e) memory, #{idle_streams} idle streams", fn -> Cases.idle_memory(idle_streams) end)

bare =
  (on?.("b") or on?.("a")) &&
    run.("(b) bare :telemetry.execute/3", fn -> Cases.bare_execute(window) end)

tp =
  for rpc <- rpcs, n <- stream_counts, on?.("a"), into: %{} do
    {{rpc, n},
     run.("(a) #{rpc}, #{n} streams", fn -> Cases.throughput(rpc, n, warmup, window, tp_opts) end)}
  end

lat_cases = [loadgen: 10_000, loadgen: 100, python: 10_000, python: 100]

lat =
  for {src, rate} <- lat_cases, on?.("d"), into: %{} do
    {win, fun} =
      case {src, rate} do
        {:loadgen, r} ->
          {if(r < 1000, do: 2 * window, else: window), &Cases.latency_loadgen(r, &1, &2)}

        {:python, r} ->
          {if(r < 1000, do: 2 * window, else: window), &Cases.latency_python(1000 / r, &1, &2)}
      end

    {{src, rate}, run.("(d) #{src} #{rate}/s", fn -> fun.(ms.(1_000), win) end)}
  end

py_tp =
  for rpc <- [:batched, :stock], on?.("f"), into: %{} do
    {rpc,
     run.("(f) python worker, #{rpc}", fn -> Cases.python_throughput(rpc, warmup, window) end)}
  end

offered =
  on?.("f") &&
    run.("(f) Python worker offered 150,000 ev/s", fn ->
      Cases.python_offered(150_000, if(quick, do: 2, else: 6))
    end)

emit_args =
  ["--json", "--throughput-seconds", "0", "--auth-calls", "400"] ++
    if(quick, do: ["--batches", "30", "--per-batch", "1000"], else: ["--batches", "100"])

emit = on?.("f") && run.("(f) emit_bench.py", fn -> Cases.emit_bench(emit_args) end)

token =
  on?.("g") &&
    run.("(g) worker token", fn -> Cases.token_cost(if(quick, do: 6, else: 20), 100) end)

# The catalog's default window (5 ms) and a longer one: every frame costs a
# few thread wake-ups on each side, so the window sets the CPU per event at
# steady rates (the trade-off the README's "Cost at steady rates" states).
max_delays =
  (opts[:max_delay_ms] || "5,100,250")
  |> String.split(",", trim: true)
  |> Enum.map(fn text -> elem(Float.parse(text), 0) end)

paced =
  on?.("h") &&
    run.("(h) steady rates", fn ->
      for d <- max_delays,
          do: Cases.paced([100, 1_000, 10_000], ms.(2_000), {5, ms.(1_600)}, d)
    end)

wake_floor = on?.("h") && run.("(h) wake-up floor", fn -> Cases.wake_floor(300, 5) end)

# Last, as it cannot be undone in this VM: bare execute once handlers are
# persisted (:telemetry.persist/0, telemetry >= 1.4), so the cases above all
# ran with the default dispatch.
bare_pt =
  (on?.("b") or on?.("a")) and function_exported?(:telemetry, :persist, 0) &&
    run.("(b) bare :telemetry.execute/3, persisted", fn ->
      :ok = apply(:telemetry, :persist, [])
      Cases.bare_execute(window)
    end)

## Figures (a figure whose case did not run is left out)

get = fn map, key -> if is_map(map), do: Map.get(map, key) end
ratio = fn a, b -> if is_number(a) and is_number(b) and b != 0, do: a / b end
tp_key = fn rpc, n -> "(a) loadgen -> NIF -> :telemetry handler, #{rpc}, #{n} stream(s)" end
credit = Cases.credit()
bare_eps = get.(bare, :events_per_s)
bare_ns = get.(bare, :sched_ns_per_event)
# CPU ns per event of some thread groups, from /proc (see Probe.window).
proc_ns = fn r, groups ->
  if is_map(r) and is_map(r[:cpu_cores]) and (r[:events] || 0) > 0 do
    Enum.sum(for g <- groups, do: r.cpu_cores[g] || 0) * r.seconds * 1.0e9 / r.events
  end
end

bare_proc_ns = proc_ns.(bare, [:beam_schedulers, :beam_dirty_cpu])
bare_pt_proc_ns = proc_ns.(bare_pt, [:beam_schedulers, :beam_dirty_cpu])
head_n = if 16 in stream_counts, do: 16, else: List.last(stream_counts)
head = tp[{:batched, head_n}]
head_id = "a#{Enum.find_index(stream_counts, &(&1 == head_n)) + 1}"

a_figs =
  for {rpc, base} <- [batched: 1, stock: length(stream_counts) + 1],
      {n, i} <- Enum.with_index(stream_counts),
      Map.has_key?(tp, {rpc, n}) do
    target = if rpc == :batched and n == 16, do: [target: {:ge, 1_000_000}], else: []

    Report.figure(
      "a#{base + i}",
      "events/s, #{rpc} RPC, #{n} stream(s)",
      get.(tp[{rpc, n}], :events_per_s),
      :eps,
      tp_key.(rpc, n),
      target
    )
  end

b_figs =
  if bare do
    [
      Report.figure(
        "b1",
        "bare :telemetry.execute/3 events/s (1 process)",
        bare_eps,
        :eps,
        "(b) bare execute"
      ),
      Report.figure(
        "b3",
        "bare :telemetry.execute/3 events/s, handlers persisted",
        get.(bare_pt, :events_per_s),
        :eps,
        "(b) bare execute, persisted"
      )
    ] ++
      if head do
        [
          Report.figure(
            "b2",
            "ratio #{head_id} / b1 (batched, #{head_n} streams ÷ bare)",
            ratio.(get.(head, :events_per_s), bare_eps),
            :ratio,
            tp_key.(:batched, head_n)
          )
        ]
      else
        []
      end
  else
    []
  end

c_figs =
  if head do
    [
      Report.figure(
        "c1",
        "BEAM scheduler ns per delivered event (#{head_id})",
        get.(head, :sched_ns_per_event),
        :ns,
        tp_key.(:batched, head_n),
        target: bare_ns && {:le, 2 * bare_ns},
        note:
          "target = 2 × c2 (normal schedulers, as specified); a garbage collection run on " <>
            "a dirty-CPU scheduler (large heaps) is not in c1: see c3"
      ),
      Report.figure(
        "c2",
        "BEAM scheduler ns per bare execute (b1)",
        bare_ns,
        :ns,
        "(b) bare execute"
      ),
      Report.figure(
        "c3",
        "BEAM dirty-CPU scheduler ns per event (#{head_id})",
        get.(head, :dirty_cpu_ns_per_event),
        :ns,
        tp_key.(:batched, head_n)
      ),
      Report.figure(
        "c4",
        "BEAM scheduler-thread CPU ns per event, /proc, normal + dirty (#{head_id})",
        proc_ns.(head, [:beam_schedulers, :beam_dirty_cpu]),
        :ns,
        tp_key.(:batched, head_n),
        target: bare_proc_ns && {:le, 2 * bare_proc_ns},
        note:
          "cross-check of c1+c3 by thread CPU time (/proc): scheduler_wall_time counts wall time, " <>
            "so a scheduler preempted on the oversubscribed cores still looks active"
      ),
      Report.figure(
        "c5",
        "BEAM scheduler-thread CPU ns per bare execute, /proc (b1)",
        bare_proc_ns,
        :ns,
        "(b) bare execute"
      ),
      Report.figure(
        "c6",
        "the same, handlers persisted (:telemetry.persist/0)",
        bare_pt_proc_ns,
        :ns,
        "(b) bare execute, persisted"
      ),
      Report.figure(
        "c7",
        "c4 / c5: per-event cost against bare execute, not persisted",
        ratio.(proc_ns.(head, [:beam_schedulers, :beam_dirty_cpu]), bare_proc_ns),
        :ratio,
        tp_key.(:batched, head_n),
        target: {:le, 2.0}
      ),
      Report.figure(
        "c8",
        "c4 / c6: per-event cost against bare execute, persisted",
        ratio.(proc_ns.(head, [:beam_schedulers, :beam_dirty_cpu]), bare_pt_proc_ns),
        :ratio,
        tp_key.(:batched, head_n),
        note: "c4 ran with the default (not persisted) dispatch"
      )
    ]
  else
    []
  end

lat_key = fn
  :loadgen, rate -> "(d) latency, loadgen at #{rate} events/s"
  :python, rate -> "(d) latency, Python worker emit_events at #{rate} events/s"
end

{d_figs, _} =
  lat_cases
  |> Enum.filter(&Map.has_key?(lat, &1))
  |> Enum.flat_map_reduce(1, fn {src, rate}, i ->
    r = lat[{src, rate}]
    name = "#{src} #{rate} ev/s"
    key = lat_key.(src, rate)
    # A Python worker coalesces: its events may wait max_delay (the default)
    # in the worker, so its bound is max_delay + 2 ms (issue 18).
    default_delay_ms = Snakepit.Telemetry.Catalog.defaults().max_delay_ms

    p99_target =
      case {src, rate} do
        {:loadgen, 10_000} ->
          [target: {:le, 2_000_000}]

        {:python, 10_000} ->
          [
            target: {:le, (default_delay_ms + 2) * 1_000_000},
            note: "target: max_delay (default #{default_delay_ms} ms) + 2 ms"
          ]

        _ ->
          []
      end

    {[
       Report.figure("d#{i}", "latency p50, #{name}", get.(r, :p50), :latency_ns, key),
       Report.figure(
         "d#{i + 1}",
         "latency p99, #{name}",
         get.(r, :p99),
         :latency_ns,
         key,
         p99_target
       ),
       Report.figure(
         "d#{i + 2}",
         "latency max, #{name} (#{get.(r, :count) || 0} samples)",
         get.(r, :max),
         :latency_ns,
         key
       )
     ], i + 3}
  end)

mem_key = "(e) memory, #{idle_streams} idle streams"

e_figs =
  if(mem,
    do: [
      Report.figure(
        "e1",
        "Rust-side bytes per idle stream (RSS Δ − BEAM Δ)",
        get.(mem, :rust_per_stream),
        :bytes,
        mem_key
      ),
      Report.figure(
        "e2",
        "BEAM-side bytes per idle stream",
        get.(mem, :beam_per_stream),
        :bytes,
        mem_key
      ),
      Report.figure(
        "e3",
        "total bytes per idle stream (RSS Δ)",
        get.(mem, :total_per_stream),
        :bytes,
        mem_key,
        target: {:le, 64 * 1024}
      )
    ],
    else: []
  ) ++
    for {n, i} <- Enum.with_index(stream_counts, 4), Map.has_key?(tp, {:batched, n}) do
      Report.figure(
        "e#{i}",
        "max GrpcStream message_queue_len, batched, #{n} stream(s), full speed",
        get.(tp[{:batched, n}], :mailbox_max),
        :count,
        tp_key.(:batched, n),
        target: {:le, n * credit + 4},
        note: if(n == 1, do: "target = streams × credit (#{credit}) + 4 status/call messages")
      )
    end

er = get.(emit, :results) || %{}
pyb = py_tp[:batched]

f_figs =
  if(emit,
    do: [
      Report.figure(
        "f1",
        "Python emit() median, gRPC backend",
        er["grpc_backend"],
        :ns,
        "(f) emit_bench.py",
        target: {:le, 1500}
      ),
      Report.figure(
        "f2",
        "Python emit() median, stderr backend (/dev/null)",
        er["stderr_devnull"],
        :ns,
        "(f) emit_bench.py",
        target: {:le, 2000},
        note: "orjson when importable (requirements-dev.txt); f8 without it"
      ),
      Report.figure(
        "f8",
        "the same, standard library only (orjson hidden)",
        er["stderr_devnull_stdlib"],
        :ns,
        "(f) emit_bench.py"
      ),
      Report.figure(
        "f3",
        "Python emit() median, stderr backend (StringIO)",
        er["stderr_stringio"],
        :ns,
        "(f) emit_bench.py"
      ),
      Report.figure(
        "f11",
        "Python encoder ns per event, 512-event batch, native (_speedups)",
        er["encode_native"],
        :ns,
        "(f) emit_bench.py"
      ),
      Report.figure(
        "f12",
        "the same, pure Python (wire.py)",
        er["encode_wire"],
        :ns,
        "(f) emit_bench.py"
      ),
      Report.figure(
        "f7",
        "worker token check per call (intercept_service, authorized)",
        er["auth_intercept_ns"],
        :ns,
        "(f) emit_bench.py",
        target: {:le, 5_000}
      )
    ],
    else: []
  ) ++
    if(pyb,
      do: [
        Report.figure(
          "f4",
          "one Python worker -> Elixir events/s, batched RPC",
          get.(pyb, :events_per_s),
          :eps,
          "(f) Python worker at full speed, batched",
          target: {:ge, 300_000}
        ),
        Report.figure(
          "f5",
          "one Python worker -> Elixir events/s, stock RPC",
          get.(py_tp[:stock], :events_per_s),
          :eps,
          "(f) Python worker at full speed, stock"
        ),
        Report.figure(
          "f6",
          "share of the worker's events dropped (f4)",
          get.(pyb, :python_dropped_pct),
          :pct,
          "(f) Python worker at full speed, batched"
        )
      ],
      else: []
    ) ++
    if(is_map(offered),
      do: [
        Report.figure(
          "f9",
          "one Python worker offered 150,000 ev/s: events/s delivered",
          offered.delivered_per_s,
          :eps,
          "(f) Python worker offered 150,000 ev/s"
        ),
        Report.figure(
          "f10",
          "the same: share of its events dropped",
          offered.dropped_pct,
          :pct,
          "(f) Python worker offered 150,000 ev/s",
          target: {:le, 0.0}
        )
      ],
      else: []
    )

token_ratio = fn kind, key ->
  with %{auth: %{^key => a}, open: %{^key => o}} <- get.(token, kind), do: ratio.(a, o)
end

g_figs =
  if(token,
    do: [
      Report.figure(
        "g1",
        "Ping round trip, worker with token / with --no-auth",
        token_ratio.(:ping, :round_trip_us),
        :ratio,
        "(g) worker token",
        note:
          "medians of alternated blocks; two workers differ by up to ±20 % run to run on " <>
            "this machine, so 1.0 ± 0.2 means no cost above the noise (f7: the check itself)"
      ),
      Report.figure(
        "g2",
        "ExecuteTool round trip, worker with token / with --no-auth",
        token_ratio.(:tool, :round_trip_us),
        :ratio,
        "(g) worker token"
      ),
      Report.figure(
        "g3",
        "Python CPU per ExecuteTool call, with token / with --no-auth",
        token_ratio.(:tool, :python_cpu_us),
        :ratio,
        "(g) worker token",
        note: "per telemetry event the token costs nothing: a stream is authenticated once"
      )
    ],
    else: []
  )

paced_row = fn p, rate, mode ->
  Enum.find(p.rows, &(&1.rate == rate and &1.mode == mode))
end

beam_cores = fn r ->
  if r, do: r.beam_schedulers + r.beam_dirty_cpu + r.beam_other + r.nif_ingest
end

# Targets of issue 18: at 10,000 ev/s telemetry adds <= 3 % of a core to the
# worker and the whole BEAM uses <= 3 %; at 1,000 ev/s <= 0.5 % each.
paced_targets = %{100 => nil, 1_000 => 0.5, 10_000 => 3.0}

floor_figs =
  if is_map(wake_floor) do
    [
      Report.figure(
        "h1",
        "floor: CPU of one wake-up of a sleeping Python thread",
        wake_floor.python_ns,
        :ns,
        "(h) wake-up floor"
      ),
      Report.figure(
        "h2",
        "floor: the same for a BEAM process (Process.sleep)",
        wake_floor.beam_ns,
        :ns,
        "(h) wake-up floor"
      ),
      Report.figure(
        "h3",
        "floor: bare grpc.aio stream, server CPU per message (timer + send)",
        wake_floor.grpc_send_ns,
        :ns,
        "(h) wake-up floor"
      ),
      Report.figure(
        "h4",
        "the same at #{wake_floor.grpc_rate} messages/s (1k ev/s in 5 ms frames)",
        wake_floor.grpc_send_ns * wake_floor.grpc_rate / 1.0e7,
        :pct,
        "(h) wake-up floor"
      )
    ]
  else
    []
  end

h_figs =
  for p <- List.wrap(paced || []), is_map(p), rate <- [100, 1_000, 10_000], reduce: floor_figs do
    acc ->
      on = paced_row.(p, rate, :on)
      added = p.python_added[rate] && p.python_added[rate] * 100
      beam = if on, do: beam_cores.(on) * 100
      target = paced_targets[rate] && {:le, paced_targets[rate]}
      d = p.max_delay_ms

      per_ev = fn pct ->
        if pct && on && on.delivered > 0, do: pct / 100 * on.seconds * 1.0e9 / on.delivered
      end

      tag = "#{div(rate, 1)}/s, max_delay #{Report.dec(d, 1)} ms"

      fig = fn n, label, value, unit, opts ->
        Report.figure(
          "h#{length(acc) + n}",
          "#{tag}: #{label}",
          value,
          unit,
          "(h) steady rates",
          opts
        )
      end

      acc ++
        [
          fig.(1, "Python CPU added (on - off, median of pairs)", added, :pct, target: target),
          fig.(2, "the same per event", per_ev.(added), :ns, []),
          fig.(3, "whole BEAM process", beam, :pct, target: target),
          fig.(4, "the same per event", per_ev.(beam), :ns, []),
          fig.(5, "emit -> handler latency p99", on && on.p99_ns, :latency_ns,
            target: {:le, (d + 2) * 1.0e6},
            note: if(rate == 100, do: "latency target: max_delay (#{d} ms) + 2 ms")
          )
        ]
  end

figures = a_figs ++ b_figs ++ c_figs ++ d_figs ++ e_figs ++ f_figs ++ g_figs ++ h_figs

setups =
  [{mem_key, mem}, {"(b) bare execute", bare}, {"(b) bare execute, persisted", bare_pt}] ++
    for(
      {rpc, n} <- for(r <- [:batched, :stock], n <- stream_counts, do: {r, n}),
      do: {tp_key.(rpc, n), tp[{rpc, n}]}
    ) ++
    for({src, rate} <- lat_cases, do: {lat_key.(src, rate), lat[{src, rate}]}) ++
    [
      {"(f) Python worker at full speed, batched", pyb},
      {"(f) Python worker at full speed, stock", py_tp[:stock]},
      {"(f) Python worker offered 150,000 ev/s", offered},
      {"(f) emit_bench.py", emit},
      {"(g) worker token", token},
      {"(h) steady rates", List.first(List.wrap(paced || []))},
      {"(h) wake-up floor", wake_floor}
    ]

used_setups = MapSet.new(figures, & &1.case)
setups = for {k, v} <- setups, k in used_setups, is_map(v), do: {k, v}

dec = &Report.dec/2

per_ev = fn r, cores ->
  if cores && r.events > 0, do: dec.(cores * r.seconds * 1.0e6 / r.events, 2)
end

cpu_rows =
  for rpc <- [:batched, :stock], n <- stream_counts, r <- [tp[{rpc, n}]], is_map(r), !r[:error] do
    c = r.cpu_cores
    beam = Enum.sum(for k <- [:beam_schedulers, :beam_dirty_cpu, :beam_other], do: c[k] || 0)

    [
      "#{rpc} #{n}",
      Report.format(r.events_per_s, :count),
      ratio.(r.events_per_s, bare_eps) && dec.(ratio.(r.events_per_s, bare_eps), 3),
      c[:loadgen],
      c[:nif_ingest],
      c[:beam_schedulers],
      c[:beam_dirty_cpu],
      c[:beam_other],
      c[:other],
      per_ev.(r, c[:loadgen]),
      per_ev.(r, c[:nif_ingest]),
      per_ev.(r, beam),
      r.sched_ns_per_event && round(r.sched_ns_per_event),
      r.dirty_cpu_ns_per_event && round(r.dirty_cpu_ns_per_event),
      r.events_per_batch && dec.(r.events_per_batch, 1),
      "#{r.mailbox_max} (≤ #{r.mailbox_bound})"
    ]
  end

elapsed_s = (System.monotonic_time(:millisecond) - started) / 1000
{rev, _} = System.cmd("git", ["rev-parse", "--short", "HEAD"], stderr_to_stdout: true)

{dirty, _} =
  System.cmd("git", ["status", "--porcelain", "--", "lib", "native", "priv"],
    stderr_to_stdout: true
  )

meta = %{
  machine: machine,
  report_path: out,
  command: Enum.join(["mix run bench/run.exs" | System.argv()], " "),
  git: String.trim(rev) <> if(dirty != "", do: " (lib/native/priv modified)", else: ""),
  finished_at: DateTime.utc_now() |> DateTime.to_iso8601(),
  elapsed_s: elapsed_s,
  quick: quick,
  sections: sections,
  cores: System.schedulers_online(),
  otp: System.otp_release(),
  elixir: System.version(),
  erl_flags: System.get_env("ERL_FLAGS", ""),
  warmup_ms: warmup,
  waited_for_quiet_ms: if(quick, do: 0, else: 90_000) - :counters.get(quiet_budget, 1),
  window_ms: window,
  bare_events_per_s: bare_eps
}

Report.print(figures, setups, cpu_rows, meta)

for p <- List.wrap(paced || []), is_map(p) do
  IO.puts("""

  Steady rates (h), max_delay #{p.max_delay_ms} ms: cores used in the window per group
  (schedstat), one real worker, telemetry on and off (toggle false); wake-ups
  (times a thread was scheduled in) per frame the worker sent; latency emit -> handler.\
  """)

  per_frame = fn runs, r -> if r.frames_per_s > 0, do: Report.dec(runs / r.frames_per_s, 2) end

  Report.table(
    ~w(rate mode delivered frames/s python py_wakes/frame beam_sched beam_dirty beam_other nif_ingest beam_wakes/frame p50 p99),
    for r <- p.rows do
      [
        r.rate,
        r.mode,
        r.delivered,
        Report.dec(r.frames_per_s, 1),
        Report.dec(r.python, 4),
        per_frame.(r.python_runs_per_s, r),
        Report.dec(r.beam_schedulers, 4),
        Report.dec(r.beam_dirty_cpu, 4),
        Report.dec(r.beam_other, 4),
        Report.dec(r.nif_ingest, 4),
        per_frame.(r.beam_runs_per_s, r),
        Report.format(r.p50_ns, :latency_ns),
        Report.format(r.p99_ns, :latency_ns)
      ]
    end
  )
  |> Enum.each(&IO.puts/1)
end

# Other load on the 2 shared cores skews every figure: say so.
disturbed =
  [{"b", bare} | Enum.map(tp, fn {{rpc, n}, r} -> {"a #{rpc} #{n}", r} end)] ++
    Enum.map(py_tp, fn {rpc, r} -> {"f python #{rpc}", r} end)

for {name, r} <- disturbed, other = get.(get.(r, :cpu_cores), :other), other > 0.1 do
  IO.puts(
    "WARNING: other processes used #{other} cores during the #{name} window: figures disturbed"
  )
end

waited_s = (if(quick, do: 0, else: 90_000) - :counters.get(quiet_budget, 1)) / 1000

IO.puts(
  "Measured in #{dec.(elapsed_s, 1)} s (git #{meta.git}), #{dec.(waited_s, 1)} s of it waiting for other load to pass."
)

Report.write_json(out, %{
  meta: meta,
  figures: figures,
  setups: Map.new(setups, fn {k, v} -> {k, %{command: v[:command], params: v[:params]}} end),
  cpu_table: cpu_rows,
  runs: %{
    memory: mem || nil,
    bare_execute: bare || nil,
    throughput: for({{rpc, n}, r} <- tp, do: Map.merge(r, %{rpc: rpc, streams: n})),
    latency: for({{src, rate}, r} <- lat, do: Map.merge(r, %{source: src, rate: rate})),
    python_throughput: for({rpc, r} <- py_tp, do: Map.put(r, :rpc, rpc)),
    emit_bench: emit || nil,
    paced: paced || nil
  }
})
