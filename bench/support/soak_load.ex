defmodule SnakepitBench.SoakLoad do
  @moduledoc false
  # What bench/soak.exs runs against its workers: the counting handler, a
  # handler that raises now and then, the tool-call load, the control changes
  # and the faults. Each loop is a process with its own seeded RNG and runs
  # until the shared stop flag is set. Counts live in one `:counters` array.

  require Logger

  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.{GrpcStream, Naming}
  alias SnakepitBench.SoakWorkers

  @counting "soak-counter"
  @raiser "soak-raiser"
  @per_worker [:handled, :kills, :calls_ok, :calls_failed, :controls]
  @global [:unknown_worker, :raised, :control_errors, :restart_failures]
  @event_names ["tool.result_size", "python.call.start", "tool.execution.stop"]

  @doc "The shared state for workers `0..n-1` (ids `ids`): counters and the stop flag."
  def new(ids) do
    keys = for(i <- 0..(length(ids) - 1), f <- @per_worker, do: {i, f}) ++ @global
    slots = keys |> Enum.with_index(1) |> Map.new()

    %{
      ids: ids,
      slots: slots,
      counters: :counters.new(map_size(slots), [:write_concurrency]),
      stop: :atomics.new(1, [])
    }
  end

  def count(s, key), do: :counters.get(s.counters, Map.fetch!(s.slots, key))
  defp bump(s, key), do: :counters.add(s.counters, Map.fetch!(s.slots, key), 1)

  def stop(s), do: :atomics.put(s.stop, 1, 1)
  def stopped?(s), do: :atomics.get(s.stop, 1) == 1

  # Sleeps `ms`, in steps, unless stopped; false once stopped.
  defp nap(s, ms) do
    cond do
      stopped?(s) -> false
      ms <= 100 -> Process.sleep(ms) == :ok
      true -> Process.sleep(100) == :ok and nap(s, ms - 100)
    end
  end

  ## Handlers

  @doc "Attaches the counting handler (a small config: :telemetry copies it per event)."
  def attach_counter(s) do
    by_id = s.ids |> Enum.with_index() |> Map.new(fn {id, i} -> {id, s.slots[{i, :handled}]} end)
    config = {s.counters, by_id, s.slots[:unknown_worker]}

    :ok =
      :telemetry.attach_many(@counting, Naming.python_events(), &__MODULE__.count_event/4, config)
  end

  # The hostile peers of `--hostile` are counted by their own streams.
  def count_event(_event, _measurements, %{worker_id: "hostile_" <> _}, _config), do: :ok

  def count_event(_event, _measurements, metadata, {counters, by_id, unknown}) do
    :counters.add(counters, Map.get(by_id, metadata[:worker_id], unknown), 1)
  end

  def counter_attached?, do: Enum.any?(:telemetry.list_handlers([]), &(&1.id == @counting))
  def raiser_attached?, do: Enum.any?(:telemetry.list_handlers([]), &(&1.id == @raiser))

  @doc "Attaches a handler that raises on its `nth` event (:telemetry then detaches it)."
  def attach_raiser(s, nth) do
    config = {:atomics.new(1, []), nth, s.counters, s.slots[:raised]}
    :telemetry.attach_many(@raiser, Naming.python_events(), &__MODULE__.raise_event/4, config)
  end

  def raise_event(_event, _measurements, _metadata, {seen, nth, counters, slot}) do
    if :atomics.add_get(seen, 1, 1) == nth do
      :counters.add(counters, slot, 1)
      raise "soak: this handler fails on purpose"
    end
  end

  @doc "A `:logger` primary filter: drops :telemetry's log of the raiser's (expected) failure."
  def quiet_raiser(%{msg: {_format, [@raiser | _]}}, _), do: :stop
  def quiet_raiser(_log_event, _), do: :ignore

  ## Load: tool calls over gRPC

  @doc "Calls tools on worker `i` until stopped: bursts, steady rates, random names."
  def load_loop(s, i, endpoint, seed) do
    :rand.seed(:exsss, seed)
    {:ok, channel} = Client.connect(endpoint, token: SnakepitBench.External.token())
    load_loop(s, i, endpoint, channel, :go)
  end

  defp load_loop(s, i, endpoint, channel, :go) do
    {tool, params} = pick_call()

    case Client.execute_tool(channel, tool, params, timeout: 30_000) do
      {:ok, _} ->
        bump(s, {i, :calls_ok})
        load_loop(s, i, endpoint, channel, if(stopped?(s), do: :done, else: :go))

      {:error, _} ->
        # Expected when the worker was killed: a new channel, a little later.
        bump(s, {i, :calls_failed})
        nap(s, 50 + :rand.uniform(150))
        {:ok, channel} = Client.connect(endpoint, token: SnakepitBench.External.token())
        load_loop(s, i, endpoint, channel, if(stopped?(s), do: :done, else: :go))
    end
  end

  defp load_loop(_s, _i, _endpoint, _channel, :done), do: :ok

  defp pick_call do
    r = :rand.uniform()
    event = Enum.random(@event_names)

    cond do
      # Full speed: more than the worker's queue (1024) -> queue_full drops.
      r < 0.30 ->
        {"emit_events", %{count: 2_000 + :rand.uniform(18_000), interval_ms: 0, event: event}}

      # Steady: 500 to 2,000 events/s for at most 2 s.
      r < 0.60 ->
        interval = Enum.random([0.5, 1, 2])
        {"emit_events", %{count: 100 + :rand.uniform(900), interval_ms: interval, event: event}}

      # Random names and keys: mostly rejected by validation, never atoms.
      r < 0.80 ->
        params = %{
          count: 200 + :rand.uniform(1_800),
          seed: :rand.uniform(1_000_000_000),
          pause_ms: 1
        }

        {"emit_random", params}

      r < 0.90 ->
        {"telemetry_demo", %{operation: "soak", delay_ms: :rand.uniform(50)}}

      true ->
        {"telemetry_state", %{}}
    end
  end

  ## Control changes through the public API

  @doc "Every 0.3-2 s, changes one worker's sampling, filter or toggle."
  def control_loop(s, seed) do
    every(s, seed, 300, 1_700, fn ->
      i = :rand.uniform(length(s.ids)) - 1
      id = Enum.at(s.ids, i)
      record_control(s, i, id, random_control(id))
    end)
  end

  defp random_control(id) do
    case :rand.uniform(4) do
      1 ->
        rate = Enum.random([0.0, 0.1, 0.5, 0.9, 1.0])
        GrpcStream.update_sampling(id, rate, Enum.random([[], ["tool.*"], ["python.*"]]))

      2 ->
        allow = Enum.random([[], ["tool.*"], ["python.*", "tool.result_size"]])
        GrpcStream.update_filter(id, allow: allow, deny: Enum.random([[], ["tool.execution.*"]]))

      3 ->
        GrpcStream.toggle(id, Enum.random([false, true]))

      4 ->
        restore(id)
    end
  end

  # Seeds this process's RNG, then runs `step` every `min_ms` plus up to
  # `spread_ms` until stopped.
  defp every(s, seed, min_ms, spread_ms, step) do
    :rand.seed(:exsss, seed)
    repeat(s, min_ms, spread_ms, step)
  end

  defp repeat(s, min_ms, spread_ms, step) do
    if nap(s, min_ms + :rand.uniform(spread_ms)) do
      step.()
      repeat(s, min_ms, spread_ms, step)
    end
  end

  @doc "Rate 1.0, no filter, enabled."
  def restore(id) do
    with :ok <- GrpcStream.update_sampling(id, 1.0),
         :ok <- GrpcStream.update_filter(id, allow: [], deny: []),
         do: GrpcStream.toggle(id, true)
  end

  def record_control(s, i, _id, :ok), do: bump(s, {i, :controls})

  def record_control(s, _i, id, error) do
    Logger.error("soak: control on #{id} failed: #{inspect(error)}")
    bump(s, :control_errors)
  end

  ## Faults

  @doc "Every 2-6 s: kill -9 a worker, restart it on its port 0.1-1.5 s later; re-arm the raiser."
  def fault_loop(s, seed) do
    every(s, seed, 2_000, 4_000, fn ->
      i = :rand.uniform(length(s.ids)) - 1
      # Half the kills land in a long full-speed burst: a full worker queue
      # and frames in flight are lost with the process (lost_with_connection).
      if :rand.uniform() < 0.5, do: burst(SoakWorkers.endpoint(i), 100 + :rand.uniform(200))
      kill_and_restart(s, i, 100 + :rand.uniform(1_400))

      if not raiser_attached?() and :rand.uniform() < 0.5,
        do: attach_raiser(s, :rand.uniform(20_000))
    end)
  end

  # Starts a 200,000-event burst on `endpoint` (the kill ends it) and waits `ms`.
  defp burst(endpoint, ms) do
    {:ok, channel} = Client.connect(endpoint, token: SnakepitBench.External.token())
    params = %{count: 200_000, interval_ms: 0}
    spawn(fn -> Client.execute_tool(channel, "emit_events", params, timeout: 30_000) end)
    Process.sleep(ms)
  end

  @doc "kill -9 worker `i`, wait `delay_ms`, start it again on the same port (a few tries)."
  def kill_and_restart(s, i, delay_ms) do
    :ok = SoakWorkers.kill(i)
    bump(s, {i, :kills})
    Process.sleep(delay_ms)
    restart(s, i, 5)
  end

  defp restart(s, i, tries) do
    case SoakWorkers.restart(i) do
      :ok ->
        :ok

      {:error, reason} when tries > 1 ->
        Logger.warning("soak: restart of worker #{i} failed (#{inspect(reason)}), retrying")
        Process.sleep(300)
        restart(s, i, tries - 1)

      {:error, reason} ->
        Logger.error("soak: worker #{i} did not restart: #{inspect(reason)}")
        bump(s, :restart_failures)
    end
  end

  ## The end

  @doc """
  Polls every stream until all are open, nothing is unaccounted, the
  handler counted what the streams delivered, and the counts stayed so for
  1.5 s (longer than a worker's 1 s totals interval, so a just restarted,
  quiet worker has reported in). `timeout_ms` at most. Returns
  `{settled?, [{id, stats, handled}]}`.
  """
  def settle(s, timeout_ms, stable_since \\ nil) do
    rows =
      s.ids
      |> Enum.with_index()
      |> Enum.map(fn {id, i} ->
        {:ok, stats} = GrpcStream.stats(id)
        {id, stats, count(s, {i, :handled})}
      end)

    ok? =
      Enum.all?(rows, fn {_, st, handled} ->
        st.state == :open and unaccounted(st) == 0 and st.events_delivered == handled
      end)

    now = System.monotonic_time(:millisecond)
    key = Enum.map(rows, fn {_, st, _} -> {st.python_emitted, st.events_delivered} end)
    stable_since = if ok? and match?({^key, _}, stable_since), do: stable_since, else: {key, now}

    cond do
      ok? and now - elem(stable_since, 1) >= 1_500 ->
        {true, rows}

      timeout_ms <= 0 ->
        {false, rows}

      true ->
        Process.sleep(250)
        settle(s, timeout_ms - 250, stable_since)
    end
  end

  @drops [:queue_full, :sampled_out, :filtered_out, :disabled, :rejected, :lost_with_connection]
  def drop_reasons, do: @drops

  @doc "Events dropped for `reason` (GrpcStream's accounting)."
  def dropped(stats, reason), do: Map.fetch!(stats.accounting.dropped, reason)

  @doc "Emitted by the workers, neither delivered nor dropped for a known reason."
  def unaccounted(stats), do: stats.accounting.unaccounted

  @doc "The atoms created since the atom count was `n` (undocumented external-format trick)."
  def atoms_since(n) do
    for i <- n..(:erlang.system_info(:atom_count) - 1)//1,
        do: :erlang.binary_to_term(<<131, 75, i::24>>)
  end
end
