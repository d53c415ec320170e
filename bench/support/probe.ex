defmodule SnakepitBench.Handlers do
  @moduledoc false
  # :telemetry handlers of the benchmarks. External captures (&Mod.fun/4)
  # so :telemetry calls them without a closure.

  @doc "The cheap handler: one :counters.add per event."
  def count(_event, _measurements, _metadata, counter), do: :counters.add(counter, 1, 1)

  @doc "emit -> handler latency: now minus the worker's emit timestamp (unix ns)."
  def latency(_event, _measurements, %{timestamp_ns: ts}, hist) when is_integer(ts) do
    SnakepitBench.Hist.record(hist, System.system_time(:nanosecond) - ts)
  end

  def latency(_event, _measurements, _metadata, _hist), do: :ok

  @doc "Keeps the first `limit` events (for the bare-execute replay)."
  def capture(event, measurements, metadata, {table, limit}) do
    if :ets.info(table, :size) < limit,
      do:
        :ets.insert(
          table,
          {:erlang.unique_integer([:monotonic]), {event, measurements, metadata}}
        )
  end
end

defmodule SnakepitBench.Hist do
  @moduledoc false
  # A lock-free log-linear histogram of non-negative integers (ns) on
  # :atomics: exact below 128, then 64 sub-buckets per power of two
  # (<= 1.6 % relative error). Slot 1 holds the exact maximum, slot 2 the
  # count of negative samples (clamped to 0).

  import Bitwise

  @sub 64
  @offset 2
  @slots @offset + @sub * 2 + @sub * 58

  def new, do: :atomics.new(@slots, signed: false)

  def reset(hist), do: for(i <- 1..@slots, do: :atomics.put(hist, i, 0))

  def record(hist, v) when v < 0 do
    :atomics.add(hist, 2, 1)
    record(hist, 0)
  end

  def record(hist, v) do
    :atomics.add(hist, @offset + index(v) + 1, 1)
    bump_max(hist, v)
  end

  defp bump_max(hist, v) do
    old = :atomics.get(hist, 1)

    if v > old and :atomics.compare_exchange(hist, 1, old, v) != :ok,
      do: bump_max(hist, v),
      else: :ok
  end

  defp index(v) when v < 2 * @sub, do: v

  defp index(v) do
    e = bits(v) - 7
    (e + 1) * @sub + (v >>> e) - @sub
  end

  # Number of significant bits of a positive integer.
  defp bits(v) do
    <<top, _::binary>> = bin = :binary.encode_unsigned(v)
    8 * (byte_size(bin) - 1) + top_bits(top)
  end

  defp top_bits(t) when t >= 16,
    do: if(t >= 64, do: if(t >= 128, do: 8, else: 7), else: if(t >= 32, do: 6, else: 5))

  defp top_bits(t),
    do: if(t >= 4, do: if(t >= 8, do: 4, else: 3), else: if(t >= 2, do: 2, else: 1))

  # The largest value of bucket `i` (0-based).
  defp upper(i) when i < 2 * @sub, do: i

  defp upper(i) do
    e = div(i, @sub) - 1
    m = rem(i, @sub) + @sub
    ((m + 1) <<< e) - 1
  end

  @doc "%{count, p50, p99, max, negative} in ns."
  def summary(hist) do
    counts = for i <- 0..(@slots - @offset - 1), do: :atomics.get(hist, @offset + i + 1)
    total = Enum.sum(counts)
    max = if total > 0, do: :atomics.get(hist, 1)
    # A bucket's upper bound can exceed the exact maximum.
    q = fn p -> if total > 0, do: min(quantile(counts, total, p), max) end
    %{count: total, p50: q.(0.50), p99: q.(0.99), max: max, negative: :atomics.get(hist, 2)}
  end

  defp quantile(_counts, 0, _q), do: nil

  defp quantile(counts, total, q) do
    rank = max(1, ceil(q * total))

    Enum.reduce_while(Enum.with_index(counts), 0, fn {c, i}, seen ->
      if seen + c >= rank, do: {:halt, {:at, upper(i)}}, else: {:cont, seen + c}
    end)
    |> elem(1)
  end
end

defmodule SnakepitBench.Probe do
  @moduledoc false
  # What a measurement window records: handler calls, scheduler time
  # (:erlang.statistics(:scheduler_wall_time)), CPU per thread group (from
  # /proc), the dispatcher's mailbox, memory.

  @doc "A snapshot to diff against with `window/3`."
  def start(counter, pids \\ %{}) do
    %{
      t: System.monotonic_time(:nanosecond),
      events: :counters.get(counter, 1),
      swt: :erlang.statistics(:scheduler_wall_time),
      cpu: cpu_ticks(pids)
    }
  end

  @doc """
  The figures of the window since `s0`: events, seconds, events/s, BEAM
  scheduler ns (normal and dirty CPU) per event and CPU cores used per
  thread group.
  """
  def window(s0, counter, pids \\ %{}) do
    s1 = start(counter, pids)
    seconds = (s1.t - s0.t) / 1.0e9
    events = s1.events - s0.events
    {normal_ns, dirty_ns} = scheduler_ns(s0.swt, s1.swt, s1.t - s0.t)

    %{
      events: events,
      seconds: seconds,
      events_per_s: events / seconds,
      sched_ns: normal_ns,
      dirty_cpu_ns: dirty_ns,
      sched_ns_per_event: if(events > 0, do: normal_ns / events),
      dirty_cpu_ns_per_event: if(events > 0, do: dirty_ns / events),
      cpu_cores: cpu_cores(s0.cpu, s1.cpu, seconds)
    }
  end

  @doc """
  Active ns of the normal schedulers and of the dirty CPU schedulers in the
  window. scheduler_wall_time's unit is unspecified, so each scheduler's
  active share of its total time is applied to the wall time measured here.
  """
  def scheduler_ns(swt0, swt1, wall_ns) do
    normal = :erlang.system_info(:schedulers)
    dirty = :erlang.system_info(:dirty_cpu_schedulers)
    before = Map.new(swt0, fn {id, a, t} -> {id, {a, t}} end)

    Enum.reduce(swt1, {0.0, 0.0}, fn {id, a1, t1}, {n, d} ->
      {a0, t0} = Map.get(before, id, {a1, t1})
      ns = if t1 > t0, do: (a1 - a0) / (t1 - t0) * wall_ns, else: 0.0

      cond do
        id <= normal -> {n + ns, d}
        id <= normal + dirty -> {n, d + ns}
        true -> {n, d}
      end
    end)
  end

  ## CPU per thread group, from /proc (utime + stime, clock ticks)

  @clk_tck 100

  # Thread groups of the BEAM by thread name; `pids` adds other OS processes
  # (e.g. %{loadgen: os_pid}).
  defp cpu_ticks(pids) do
    beam =
      Path.wildcard("/proc/#{System.pid()}/task/*")
      |> Enum.reduce(%{}, fn dir, acc ->
        with {:ok, comm} <- File.read(Path.join(dir, "comm")),
             {:ok, ticks} <- stat_ticks(Path.join(dir, "stat")) do
          Map.update(acc, group(String.trim(comm)), ticks, &(&1 + ticks))
        else
          _ -> acc
        end
      end)

    Enum.reduce(pids, beam, fn {name, os_pid}, acc ->
      case stat_ticks("/proc/#{os_pid}/stat") do
        {:ok, ticks} -> Map.put(acc, name, ticks)
        _ -> acc
      end
    end)
    |> Map.put(:machine_busy, machine_busy_ticks())
  end

  # All CPUs' non-idle ticks (/proc/stat), to see other load on the machine.
  defp machine_busy_ticks do
    with {:ok, text} <- File.read("/proc/stat"),
         ["cpu" | fields] <- text |> String.split("\n", parts: 2) |> hd() |> String.split() do
      # user nice system idle iowait irq softirq (steal and guest left out).
      [user, nice, system, _idle, _iowait, irq, softirq | _] =
        Enum.map(fields, &String.to_integer/1)

      user + nice + system + irq + softirq
    else
      _ -> 0
    end
  end

  defp group("snakepit-ingest"), do: :nif_ingest
  defp group(name), do: beam_group(Regex.run(~r/^\d+_(\w+)$/, name))

  defp beam_group([_, "scheduler"]), do: :beam_schedulers
  defp beam_group([_, "dirty_cpu_sch" <> _]), do: :beam_dirty_cpu
  defp beam_group(_), do: :beam_other

  ## CPU in ns and times scheduled in, per thread group (/proc/.../schedstat)

  @doc """
  `%{group => {cpu_ns, runs}}` so far: the BEAM's threads grouped as in
  `window/3`, each of `pids` as a whole process. From schedstat, which
  counts exact nanoseconds (utime/stime are 10 ms ticks, too coarse for
  0.5 % of a core) and how often each thread got a CPU: a thread that
  sleeps between events is scheduled in once per wake-up, so `runs` counts
  wake-ups.
  """
  def runs(pids \\ %{}) do
    beam_pid = System.pid()
    pids = Map.new(pids, fn {name, os_pid} -> {name, to_string(os_pid)} end)
    threads = sample([beam_pid | Map.values(pids)])

    beam =
      for {^beam_pid, comm, v} <- threads, reduce: %{} do
        acc -> Map.update(acc, group(comm), v, &add_runs(&1, v))
      end

    Enum.reduce(pids, beam, fn {name, os_pid}, acc ->
      total = for {^os_pid, _, v} <- threads, reduce: {0, 0}, do: (sum -> add_runs(sum, v))
      Map.put(acc, name, total)
    end)
  end

  # The /proc files are read by bench/support/schedstat_sampler.py, a process
  # of its own: reading them here would cost the BEAM more CPU per sample
  # (2-4.5 ms on a small VM) than the figures it measures. One sampler per
  # calling process (a port talks to its owner), started on first use; it
  # ends with its port, so with that process.
  defp sample(os_pids) do
    port = sampler()
    true = Port.command(port, Enum.join(os_pids, " ") <> "\n")
    read_sample(port, [])
  end

  defp read_sample(port, acc) do
    receive do
      {^port, {:data, {:eol, "."}}} ->
        acc

      {^port, {:data, {:eol, line}}} ->
        [pid, _tid, ns, runs, comm] = String.split(line, " ", parts: 5)
        read_sample(port, [{pid, comm, {String.to_integer(ns), String.to_integer(runs)}} | acc])
    after
      10_000 -> raise "bench/support/schedstat_sampler.py did not answer in 10 s"
    end
  end

  defp sampler do
    case Process.get({__MODULE__, :sampler}) do
      port when is_port(port) ->
        if Port.info(port) != nil, do: port, else: start_sampler()

      nil ->
        start_sampler()
    end
  end

  defp start_sampler do
    script = Path.expand("schedstat_sampler.py", __DIR__)

    port =
      Port.open({:spawn_executable, Snakepit.Python.executable()}, [
        :binary,
        {:line, 4096},
        args: ["-u", script]
      ])

    Process.put({__MODULE__, :sampler}, port)
    port
  end

  @doc "`%{group => %{cores, runs_per_s}}` between two `runs/1` snapshots."
  def runs_window(r0, r1, seconds) do
    Map.new(r1, fn {k, {ns, n}} ->
      {ns0, n0} = Map.get(r0, k, {0, 0})
      {k, %{cores: (ns - ns0) / 1.0e9 / seconds, runs_per_s: (n - n0) / seconds}}
    end)
  end

  defp add_runs({a, b}, {c, d}), do: {a + c, b + d}

  @doc "CPU ticks (user + system) an OS process has used so far."
  def process_ticks(os_pid) do
    {:ok, ticks} = stat_ticks("/proc/#{os_pid}/stat")
    ticks
  end

  @doc "Ticks per second of /proc's CPU counters."
  def clk_tck, do: @clk_tck

  defp stat_ticks(path) do
    with {:ok, text} <- File.read(path) do
      # Fields after the parenthesised command; utime and stime are 14 and 15.
      [_, rest] = String.split(text, ") ", parts: 2)
      fields = String.split(rest, " ")
      {:ok, String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))}
    end
  end

  # Cores used per group; `:other` is the machine's busy time not used by
  # the BEAM or the given processes (e.g. a compiler running meanwhile).
  defp cpu_cores(c0, c1, seconds) do
    cores = Map.new(c1, fn {k, v} -> {k, (v - Map.get(c0, k, 0)) / @clk_tck / seconds} end)
    ours = cores |> Map.delete(:machine_busy) |> Map.values() |> Enum.sum()

    cores
    |> Map.put(:other, max(cores.machine_busy - ours, 0.0))
    |> Map.new(fn {k, v} -> {k, Float.round(v, 4)} end)
  end

  ## Other load on the machine

  @doc """
  Waits until processes other than the BEAM use less than `max_cores` over
  a 500 ms sample, for at most `budget_ms`; returns the ms waited.
  """
  def wait_quiet(budget_ms, max_cores \\ 0.15) do
    t0 = System.monotonic_time(:millisecond)
    wait_quiet(t0, budget_ms, max_cores)
  end

  defp wait_quiet(t0, budget_ms, max_cores) do
    c0 = cpu_ticks(%{})
    Process.sleep(500)
    other = cpu_cores(c0, cpu_ticks(%{}), 0.5).other
    waited = System.monotonic_time(:millisecond) - t0

    if other < max_cores or waited >= budget_ms,
      do: waited,
      else: wait_quiet(t0, budget_ms, max_cores)
  end

  ## Mailbox of the dispatching process

  @doc "Samples `pid`'s message_queue_len every `every_ms` until `stop_sampler/1`."
  def start_sampler(pid, every_ms \\ 2) do
    spawn_link(fn -> sample(pid, every_ms, 0, 0) end)
  end

  @doc "%{max, samples}."
  def stop_sampler(sampler) do
    ref = Process.monitor(sampler)
    send(sampler, {:stop, self()})

    receive do
      {:sampled, ^sampler, result} -> result
    after
      5_000 -> %{max: nil, samples: 0}
    end
    |> tap(fn _ -> Process.demonitor(ref, [:flush]) end)
  end

  defp sample(pid, every_ms, max, n) do
    receive do
      {:stop, from} -> send(from, {:sampled, self(), %{max: max, samples: n}})
    after
      every_ms ->
        case Process.info(pid, :message_queue_len) do
          {:message_queue_len, q} -> sample(pid, every_ms, max(max, q), n + 1)
          nil -> sample(pid, every_ms, max, n)
        end
    end
  end

  ## Memory

  @doc "The BEAM's resident set (bytes) and :erlang.memory(:total), after a full GC."
  def memory do
    for p <- Process.list(), do: :erlang.garbage_collect(p)
    %{rss: rss(System.pid()), beam_total: :erlang.memory(:total)}
  end

  def rss(os_pid) do
    case File.read("/proc/#{os_pid}/status") do
      {:ok, text} ->
        [_, kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, text)
        String.to_integer(kb) * 1024

      _ ->
        nil
    end
  end
end
