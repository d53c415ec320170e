defmodule SnakepitBench.Cases do
  @moduledoc false
  # The measurements of `make bench`. Each case starts what it needs (a load
  # generator or a Python worker), registers streams with GrpcStream,
  # measures over a fixed window after a warm-up and cleans up. Each returns
  # a map of raw figures plus `:command` / `:params` describing the setup.

  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.{GrpcStream, Naming}
  alias SnakepitBench.{External, Handlers, Hist, Probe}

  @credit 4
  @register_opts_doc "max_batch 512, credit #{@credit}, window_bytes 256 KiB (defaults)"

  def credit, do: @credit

  ## (e) memory per idle stream

  @doc "Rust-side and BEAM-side bytes per idle stream (registered, open, no events)."
  def idle_memory(n) do
    lg = External.start_loadgen(["--rate", "0.001"])

    try do
      # Start the NIF's runtime and touch its one-time allocations first.
      register(lg.endpoint, ["bench-mem-warm"], [])
      unregister(["bench-mem-warm"])
      Process.sleep(300)
      m0 = Probe.memory()
      ids = ids("idle", n)
      register(lg.endpoint, ids, [])
      Process.sleep(1_000)
      m1 = Probe.memory()
      delivered = ids |> Enum.map(&stat(&1, :events_delivered)) |> Enum.sum()
      unregister(ids)
      rss = m1.rss - m0.rss
      beam = m1.beam_total - m0.beam_total

      %{
        streams: n,
        rss_delta: rss,
        beam_delta: beam,
        rust_per_stream: (rss - beam) / n,
        beam_per_stream: beam / n,
        total_per_stream: rss / n,
        events_while_idle: delivered,
        command: lg.command,
        params:
          "#{n} x register_worker (rpc :auto, #{@register_opts_doc}), all :open, 1 s settle; " <>
            "RSS from /proc/<beam>/status VmRSS, BEAM from :erlang.memory(:total), both after a full GC"
      }
    after
      cleanup()
      External.stop(lg)
    end
  end

  ## (b) bare :telemetry.execute/3

  @doc "Replays `sample` real delivered events with :telemetry.execute/3 in one process."
  def bare_execute(window_ms, sample \\ 1024) do
    events = capture_events(sample)
    counter = :counters.new(1, [:write_concurrency])

    with_handler(&Handlers.count/4, counter, fn ->
      s0 = Probe.start(counter)
      deadline = System.monotonic_time(:millisecond) + window_ms
      task = Task.async(fn -> replay(events, events, deadline) end)
      Task.await(task, window_ms + 5_000)
      w = Probe.window(s0, counter)

      Map.merge(w, %{
        command: "in-process",
        params:
          "one process loops :telemetry.execute/3 over #{length(events)} events captured from " <>
            "the loadgen (as the NIF delivers them); handler :counters.add; window #{window_ms} ms"
      })
    end)
  end

  defp replay([], all, deadline) do
    if System.monotonic_time(:millisecond) < deadline, do: replay(all, all, deadline), else: :ok
  end

  defp replay([{e, m, md} | rest], all, deadline) do
    :telemetry.execute(e, m, md)
    replay(rest, all, deadline)
  end

  defp capture_events(n) do
    lg = External.start_loadgen(["--rate", "0", "--total", to_string(n * 2)])
    table = :ets.new(:bench_capture, [:public, :ordered_set])

    try do
      with_handler(&Handlers.capture/4, {table, n}, fn ->
        [id] = ids = ids("capture", 1)
        # Not `register/3`, which waits to see the stream :open: this
        # loadgen ends each stream after `--total` events, within
        # milliseconds, so a poll could miss every open (the bench once
        # timed out so, 30 s); the events arriving are what counts.
        {:ok, _} =
          GrpcStream.register_worker(lg.endpoint, %{worker_id: id, pool_name: :bench},
            token: External.token()
          )

        wait_until(fn -> :ets.info(table, :size) >= n end, 10_000)
        unregister(ids)
      end)

      for {_, event} <- :ets.tab2list(table), do: event
    after
      :ets.delete(table)
      cleanup()
      External.stop(lg)
    end
  end

  ## (a), (c), (e) loadgen -> NIF -> handler at full speed

  @doc "Sustained events/s from the loadgen through the NIF into the counting handler."
  def throughput(rpc, n, warmup_ms, window_ms, opts \\ []) do
    lg_batch = Keyword.get(opts, :loadgen_batch, 256)
    register_opts = Keyword.take(opts, [:max_batch]) ++ [rpc: rpc]

    args =
      ["--rate", "0", "--batch", "#{lg_batch}"] ++
        if(rpc == :stock, do: ["--stock-only"], else: [])

    lg = External.start_loadgen(args)
    counter = :counters.new(1, [:write_concurrency])

    try do
      with_handler(&Handlers.count/4, counter, fn ->
        ids = ids("tp-#{rpc}-#{n}", n)
        register(lg.endpoint, ids, register_opts)
        Process.sleep(warmup_ms)
        before = sum_stats(ids)
        sampler = Probe.start_sampler(Process.whereis(GrpcStream))
        s0 = Probe.start(counter, %{loadgen: lg.os_pid})
        Process.sleep(window_ms)
        w = Probe.window(s0, counter, %{loadgen: lg.os_pid})
        mailbox = Probe.stop_sampler(sampler)
        after_ = sum_stats(ids)
        unregister(ids)
        delta = Map.new(after_, fn {k, v} -> {k, v - Map.get(before, k, 0)} end)

        Map.merge(w, %{
          rpc: rpc,
          streams: n,
          mailbox_max: mailbox.max,
          mailbox_samples: mailbox.samples,
          mailbox_bound: n * @credit + 4,
          events_per_batch: if(delta.batches > 0, do: delta.events_delivered / delta.batches),
          credit_waits: delta.credit_waits,
          command: lg.command,
          params:
            "#{n} stream(s), register_worker #{inspect(register_opts)} (else #{@register_opts_doc}); " <>
              "handler :counters.add on all #{length(Naming.python_events())} python events; " <>
              "warm-up #{warmup_ms} ms, window #{window_ms} ms; mailbox sampled every 2 ms"
        })
      end)
    after
      cleanup()
      External.stop(lg)
    end
  end

  ## (d) emit -> handler latency

  @doc "Latency at `rate` events/s from one loadgen stream (batched RPC)."
  def latency_loadgen(rate, warmup_ms, window_ms) do
    lg = External.start_loadgen(["--rate", fmt_num(rate)])

    try do
      measure_latency(lg.endpoint, warmup_ms, window_ms, fn -> :ok end)
      |> Map.merge(%{
        rate: rate,
        command: lg.command,
        params:
          "1 stream, rpc :batched; handler: System.system_time(:nanosecond) - metadata.timestamp_ns; " <>
            "warm-up #{warmup_ms} ms, window #{window_ms} ms"
      })
    after
      cleanup()
      External.stop(lg)
    end
  end

  @doc "Latency at 1000/interval_ms events/s from a real Python worker (emit_events)."
  def latency_python(interval_ms, warmup_ms, window_ms) do
    py = External.start_python()
    count = round((warmup_ms + window_ms) / interval_ms)
    params = %{count: count, interval_ms: interval_ms, event: "tool.result_size"}

    try do
      measure_latency(py.endpoint, warmup_ms, window_ms, fn ->
        {:ok, channel} = Client.connect(py.endpoint, token: External.token())

        Task.async(fn -> Client.execute_tool(channel, "emit_events", params, timeout: 120_000) end)
      end)
      |> Map.merge(%{
        rate: 1000 / interval_ms,
        command: py.command,
        params:
          "1 stream, rpc :batched; ExecuteTool emit_events #{inspect(params)}; handler as above; " <>
            "warm-up #{warmup_ms} ms, window #{window_ms} ms"
      })
    after
      cleanup()
      External.stop(py)
    end
  end

  defp measure_latency(endpoint, warmup_ms, window_ms, start_load) do
    hist = Hist.new()

    with_handler(&Handlers.latency/4, hist, fn ->
      ids = ids("lat", 1)
      register(endpoint, ids, rpc: :batched)
      load = start_load.()
      Process.sleep(warmup_ms)
      Hist.reset(hist)
      t0 = System.monotonic_time(:nanosecond)
      Process.sleep(window_ms)
      summary = Hist.summary(hist)
      seconds = (System.monotonic_time(:nanosecond) - t0) / 1.0e9
      if is_struct(load, Task), do: Task.shutdown(load, 2_000)
      unregister(ids)
      Map.put(summary, :events_per_s, summary.count / seconds)
    end)
  end

  ## (f) one real Python worker at full speed

  @doc "Events/s one Python worker sustains into Elixir (emit_events, interval 0)."
  def python_throughput(rpc, warmup_ms, window_ms) do
    params = %{count: 10_000_000, interval_ms: 0, event: "tool.result_size"}

    with_python_stream("py-#{rpc}", rpc, fn py, id, ids, channel, counter ->
      # Never awaited: the worker is killed after the window.
      spawn(fn -> Client.execute_tool(channel, "emit_events", params, timeout: 600_000) end)
      Process.sleep(warmup_ms)
      {:ok, st0} = GrpcStream.stats(id)
      s0 = Probe.start(counter, %{python: py.os_pid})
      Process.sleep(window_ms)
      w = Probe.window(s0, counter, %{python: py.os_pid})
      {:ok, st1} = GrpcStream.stats(id)
      unregister(ids)
      emitted = st1.python_emitted - st0.python_emitted
      dropped = st1.python_dropped - st0.python_dropped

      Map.merge(w, %{
        rpc: rpc,
        rpc_used: st1.rpc,
        python_emitted_per_s: if(emitted > 0, do: emitted / w.seconds),
        python_dropped_pct: if(emitted > 0, do: 100 * dropped / emitted),
        command: py.command,
        params:
          "1 stream, register_worker rpc: #{inspect(rpc)}; ExecuteTool emit_events #{inspect(params)} " <>
            "(worker killed after the window); handler :counters.add; " <>
            "warm-up #{warmup_ms} ms, window #{window_ms} ms"
      })
    end)
  end

  # One real worker with one registered stream and a counting handler:
  # `fun.(py, id, ids, channel, counter)`; the worker is stopped after.
  defp with_python_stream(prefix, rpc, fun) do
    py = External.start_python()
    counter = :counters.new(1, [:write_concurrency])

    try do
      with_handler(&Handlers.count/4, counter, fn ->
        [id] = ids = ids(prefix, 1)
        register(py.endpoint, ids, rpc: rpc)
        {:ok, channel} = Client.connect(py.endpoint, token: External.token())
        fun.(py, id, ids, channel, counter)
      end)
    after
      cleanup()
      External.stop(py)
    end
  end

  @doc """
  One real worker offered `rate` events/s (emit_events paced) for
  `seconds`: events/s delivered to the handler and the share the worker
  dropped (its own running totals).
  """
  def python_offered(rate, seconds) do
    params = %{count: rate * seconds, interval_ms: 1000 / rate, event: "tool.result_size"}

    with_python_stream("py-offered", :batched, fn py, id, ids, channel, counter ->
      t0 = System.monotonic_time(:nanosecond)
      {:ok, _} = Client.execute_tool(channel, "emit_events", params, timeout: seconds * 10_000)
      wanted = rate * seconds

      wait_until(
        fn ->
          {:ok, st} = GrpcStream.stats(id)
          :counters.get(counter, 1) + st.python_dropped >= wanted
        end,
        10_000
      )

      elapsed = (System.monotonic_time(:nanosecond) - t0) / 1.0e9
      {:ok, st} = GrpcStream.stats(id)
      unregister(ids)

      %{
        delivered_per_s: :counters.get(counter, 1) / elapsed,
        dropped_pct: 100 * st.python_dropped / max(st.python_emitted, 1),
        command: py.command,
        params:
          "1 stream, rpc :batched; ExecuteTool emit_events #{inspect(params)} to completion; " <>
            "handler :counters.add; drops from the worker's running totals"
      }
    end)
  end

  @doc "priv/python/bench/emit_bench.py --json: median ns per emit() by backend."
  def emit_bench(args) do
    script = External.python_file("bench/emit_bench.py")
    exe = Snakepit.Python.executable()
    {out, status} = System.cmd(exe, [script | args], stderr_to_stdout: true)
    if status != 0, do: raise("emit_bench.py exited #{status}: #{out}")
    line = out |> String.split("\n", trim: true) |> Enum.find(&String.starts_with?(&1, "{"))

    results =
      Regex.scan(~r/"(\w+)":\s*(-?[0-9.eE+-]+)/, line || "")
      |> Map.new(fn [_, k, v] -> {k, elem(Float.parse(v), 0)} end)

    %{
      results: results,
      command:
        External.command_line(Path.relative_to(exe, External.root()), [
          Path.relative_to(script, External.root()) | args
        ]),
      params: "median of per-call times over timed batches (emit_bench.py docstring)"
    }
  end

  ## (h) steady rates: what telemetry costs a real worker at 100-10k events/s

  # After a toggle: the control frame reaches the worker, and the frame it
  # was lingering on is delivered, before a block is measured.
  @settle_ms 300

  @doc """
  One real Python worker emitting at each steady rate (`emit_events`
  paced): CPU of the Python process with telemetry on and, as the baseline,
  off (`toggle(id, false)`: `emit` returns early), of the BEAM's threads by
  group (schedulers, dirty CPU, others) and of the NIF's ingest threads, and
  emit -> handler latency. The worker coalesces with `--max-delay-ms`.

  On and off alternate in `pairs` pairs of `block_ms` blocks (on-off, then
  off-on, ...) while the worker keeps emitting, so drift of the machine hits
  both alike; a row sums its mode's blocks, and `python_added` is the median
  of the pairs' differences.
  """
  def paced(rates, warmup_ms, {pairs, block_ms}, max_delay_ms) do
    extra = String.split(System.get_env("BENCH_PY_ARGS", ""))
    py = External.start_python(["--max-delay-ms", to_string(max_delay_ms)] ++ extra)
    hist = Hist.new()

    try do
      with_handler(&Handlers.latency/4, hist, fn ->
        [id] = ids = ids("paced", 1)
        register(py.endpoint, ids, rpc: :batched)
        {:ok, channel} = Client.connect(py.endpoint, token: External.token())

        rows =
          for rate <- rates do
            paced_rate(channel, id, py.os_pid, hist, rate, warmup_ms, pairs, block_ms)
          end

        unregister(ids)

        %{
          rows: List.flatten(for {on, off, _} <- rows, do: [on, off]),
          python_added: Map.new(rows, fn {on, _, added} -> {on.rate, added} end),
          max_delay_ms: max_delay_ms,
          command: py.command,
          params:
            "ExecuteTool emit_events %{count, interval_ms: 1000/rate}; warm-up #{warmup_ms} ms, " <>
              "then #{pairs} pairs of #{block_ms} ms blocks on/off alternated (#{@settle_ms} ms " <>
              "settling after each toggle); off = GrpcStream.toggle(id, false); " <>
              "handler: latency histogram"
        }
      end)
    after
      cleanup()
      External.stop(py)
    end
  end

  defp paced_rate(channel, id, os_pid, hist, rate, warmup_ms, pairs, block_ms) do
    :ok = GrpcStream.toggle(id, true)
    total_ms = warmup_ms + 2 * pairs * (@settle_ms + block_ms) + 500
    params = %{count: round(rate * total_ms / 1000), interval_ms: 1000 / rate}
    timeout = total_ms + 30_000

    task =
      Task.async(fn -> Client.execute_tool(channel, "emit_events", params, timeout: timeout) end)

    Process.sleep(warmup_ms)
    Hist.reset(hist)

    # on-off, off-on, on-off, ...: a trend in the machine's load adds to
    # both modes alike.
    blocks =
      for pair <- 1..pairs, mode <- if(rem(pair, 2) == 1, do: [:on, :off], else: [:off, :on]) do
        :ok = GrpcStream.toggle(id, mode == :on)
        Process.sleep(@settle_ms)
        {mode, paced_block(id, os_pid, block_ms)}
      end

    lat = Hist.summary(hist)
    {:ok, _} = Task.await(task, timeout)
    :ok = GrpcStream.toggle(id, true)

    row = fn mode ->
      mine = for {^mode, b} <- blocks, do: b
      seconds = Enum.sum(Enum.map(mine, & &1.seconds))
      cores = fn key -> Enum.sum(Enum.map(mine, &(&1.cpu[key] * &1.seconds))) / seconds end
      per_s = fn key -> Enum.sum(Enum.map(mine, &(&1[key] * &1.seconds))) / seconds end

      %{
        rate: rate,
        mode: mode,
        seconds: seconds,
        delivered: Enum.sum(Enum.map(mine, & &1.delivered)),
        frames_per_s: per_s.(:frames_per_s),
        python: cores.(:python),
        python_runs_per_s: per_s.(:python_runs_per_s),
        beam_schedulers: cores.(:beam_schedulers),
        beam_dirty_cpu: cores.(:beam_dirty_cpu),
        beam_other: cores.(:beam_other),
        nif_ingest: cores.(:nif_ingest),
        beam_runs_per_s: per_s.(:beam_runs_per_s),
        p50_ns: if(mode == :on, do: lat.p50),
        p99_ns: if(mode == :on, do: lat.p99)
      }
    end

    # Per pair: Python cores on minus off; the median resists one slow spell.
    added =
      blocks
      |> Enum.chunk_every(2)
      |> Enum.map(fn pair ->
        Map.new(pair)
        |> then(&(&1.on.cpu.python - &1.off.cpu.python))
      end)
      |> median()

    {row.(:on), row.(:off), added}
  end

  defp paced_block(id, os_pid, block_ms) do
    snapshot = fn ->
      {:ok, st} = GrpcStream.stats(id)
      {System.monotonic_time(:nanosecond), Probe.runs(%{python: os_pid}), st}
    end

    {t0, r0, st0} = snapshot.()
    Process.sleep(block_ms)
    {t1, r1, st1} = snapshot.()

    seconds = (t1 - t0) / 1.0e9
    w = Probe.runs_window(r0, r1, seconds)
    group = fn key, field -> get_in(w, [key, field]) || 0.0 end
    beam_groups = [:beam_schedulers, :beam_dirty_cpu, :beam_other, :nif_ingest]

    %{
      seconds: seconds,
      delivered: st1.events_delivered - st0.events_delivered,
      frames_per_s: (st1.frames - st0.frames) / seconds,
      cpu: Map.new([:python | beam_groups], &{&1, group.(&1, :cores)}),
      python_runs_per_s: group.(:python, :runs_per_s),
      beam_runs_per_s: Enum.sum(for k <- beam_groups, do: group.(k, :runs_per_s))
    }
  end

  @doc """
  What one wake-up of a sleeping thread costs on this machine, the floor
  under every per-frame figure of (h): a Python process sleeping `n` times
  for `sleep_ms` (its own CLOCK_PROCESS_CPUTIME_ID) and a BEAM process doing
  `Process.sleep(sleep_ms)` `n` times (the BEAM's CPU from schedstat, all
  threads). ns per wake-up, each. And what a bare grpc.aio stream costs its
  server per message at 200 messages/s, with no telemetry code
  (`bench/support/grpc_floor.py`): a worker sending 5 ms frames pays at
  least that per frame.
  """
  def wake_floor(n, sleep_ms) do
    code =
      "import time\nt = time.process_time_ns()\n" <>
        "for _ in range(#{n}): time.sleep(#{sleep_ms / 1000})\n" <>
        "print((time.process_time_ns() - t) // #{n})"

    {out, 0} = System.cmd(Snakepit.Python.executable(), ["-c", code])
    grpc = grpc_floor(200, 5)
    r0 = Probe.runs()
    for _ <- 1..n, do: Process.sleep(sleep_ms)
    r1 = Probe.runs()
    beam_ns = Enum.sum(for {k, {ns, _}} <- r1, do: ns - elem(Map.get(r0, k, {0, 0}), 0))

    %{
      python_ns: String.to_integer(String.trim(out)),
      beam_ns: beam_ns / n,
      grpc_rate: 200,
      grpc_sleep_ns: grpc.sleep_ns,
      grpc_send_ns: grpc.send_ns,
      command:
        "python -c 'time.sleep(#{sleep_ms / 1000}) x #{n}'; Process.sleep(#{sleep_ms}) x #{n}; " <>
          "python bench/support/grpc_floor.py 200 5",
      params:
        "#{n} sleeps of #{sleep_ms} ms each; CPU per wake-up, all threads of the process; " <>
          "grpc.aio: 60-byte messages, a sync client in another process, 5 s " <>
          "(its timer alone: #{grpc.sleep_ns} ns per tick)"
    }
  end

  # bench/support/grpc_floor.py: a bare grpc.aio stream's server CPU per
  # tick at `rate`, its event loop's timer alone and with one message sent.
  defp grpc_floor(rate, seconds) do
    script = Path.expand("grpc_floor.py", __DIR__)
    args = [script, to_string(rate), to_string(seconds)]
    {out, 0} = System.cmd(Snakepit.Python.executable(), args)

    Map.new(Regex.scan(~r/(\w+)=(\d+)/, out), fn [_, k, v] ->
      {String.to_existing_atom(k), String.to_integer(v)}
    end)
  end

  ## (g) what the worker token costs

  @doc """
  Round trip and worker CPU per call, Ping and ExecuteTool `ping`, against
  two workers: one checking the token, one started with `--no-auth`.
  Blocks of `per_block` calls alternate between them (one run, so drift
  hits both alike); figures are medians of the block medians.
  """
  def token_cost(blocks, per_block) do
    authed = External.start_python()
    open = External.start_python([], auth: false)

    try do
      {:ok, ch_auth} = Client.connect(authed.endpoint, token: External.token())
      {:ok, ch_open} = Client.connect(open.endpoint)

      calls = [
        ping: fn ch -> {:ok, _} = Client.ping(ch) end,
        tool: fn ch -> {:ok, _} = Client.execute_tool(ch, "ping", %{}) end
      ]

      results =
        for {kind, call} <- calls, into: %{} do
          # Warm-up: connections made, code paths loaded.
          for _ <- 1..per_block, do: call.(ch_auth) && call.(ch_open)

          {a, o} =
            alternate(blocks, per_block, {ch_auth, authed.os_pid}, {ch_open, open.os_pid}, call)

          {kind, %{auth: a, open: o}}
        end

      Map.merge(results, %{
        command: authed.command,
        params:
          "#{blocks} x #{per_block} calls per worker and kind, alternated; Client.ping/1 and " <>
            "Client.execute_tool(ch, \"ping\", %{}); baseline worker started with --no-auth"
      })
    after
      External.stop(authed)
      External.stop(open)
    end
  end

  defp alternate(blocks, per_block, {ch_a, pid_a}, {ch_o, pid_o}, call) do
    {cpu_a0, cpu_o0} = {Probe.process_ticks(pid_a), Probe.process_ticks(pid_o)}

    {us_a, us_o} =
      Enum.reduce(1..blocks, {[], []}, fn _, {a, o} ->
        {[block_median(per_block, fn -> call.(ch_a) end) | a],
         [block_median(per_block, fn -> call.(ch_o) end) | o]}
      end)

    calls = blocks * per_block
    cpu_us = fn t0, pid -> (Probe.process_ticks(pid) - t0) * 1.0e6 / Probe.clk_tck() / calls end

    {%{round_trip_us: median(us_a), python_cpu_us: cpu_us.(cpu_a0, pid_a)},
     %{round_trip_us: median(us_o), python_cpu_us: cpu_us.(cpu_o0, pid_o)}}
  end

  defp block_median(n, fun) do
    for(_ <- 1..n, do: elem(:timer.tc(fun), 0)) |> median()
  end

  defp median(values) do
    sorted = Enum.sort(values)
    Enum.at(sorted, div(length(sorted), 2)) * 1.0
  end

  ## helpers

  defp ids(prefix, n), do: for(i <- 1..n, do: "bench-#{prefix}-#{i}")

  # Registers every id at `endpoint` and waits until all streams are open.
  defp register(endpoint, ids, opts) do
    for id <- ids do
      {:ok, _} =
        GrpcStream.register_worker(
          endpoint,
          %{worker_id: id, pool_name: :bench},
          Keyword.put_new(opts, :token, External.token())
        )
    end

    wanted = MapSet.new(ids)

    wait_until(
      fn ->
        GrpcStream.list_streams()
        |> Enum.count(&(&1.worker_id in wanted and &1.state == :open))
        |> Kernel.==(length(ids))
      end,
      30_000
    )
  end

  # Unregisters whatever a case left registered (e.g. after a failure), so
  # that no stream keeps reconnecting during the next cases.
  defp cleanup do
    GrpcStream.list_streams()
    |> Enum.map(& &1.worker_id)
    |> Enum.filter(&String.starts_with?(&1, "bench-"))
    |> unregister()
  end

  defp unregister(ids) do
    ids
    |> Task.async_stream(&GrpcStream.unregister_worker/1, max_concurrency: 64, timeout: 15_000)
    |> Stream.run()
  end

  defp stat(id, key) do
    {:ok, stats} = GrpcStream.stats(id)
    Map.fetch!(stats, key)
  end

  defp sum_stats(ids) do
    keys = [:events_delivered, :batches, :credit_waits]

    Enum.reduce(ids, Map.new(keys, &{&1, 0}), fn id, acc ->
      {:ok, stats} = GrpcStream.stats(id)
      Map.new(keys, &{&1, acc[&1] + Map.get(stats, &1, 0)})
    end)
  end

  defp with_handler(fun, config, body) do
    id = "snakepit-bench-#{System.unique_integer([:positive])}"
    :ok = :telemetry.attach_many(id, Naming.python_events(), fun, config)

    try do
      body.()
    after
      :telemetry.detach(id)
    end
  end

  defp wait_until(fun, timeout_ms) do
    deadline = System.monotonic_time(:millisecond) + timeout_ms

    Stream.repeatedly(fn -> fun.() || (Process.sleep(20) && false) end)
    |> Enum.find(fn ok -> ok or System.monotonic_time(:millisecond) > deadline end)
    |> Kernel.||(raise "timed out after #{timeout_ms} ms")
  end

  defp fmt_num(n) when is_integer(n), do: Integer.to_string(n)
  defp fmt_num(n), do: :erlang.float_to_binary(n / 1, [:short])
end
