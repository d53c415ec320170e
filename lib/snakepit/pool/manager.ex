defmodule Snakepit.Pool.Manager do
  @moduledoc false
  # The pool's one stateful process: which workers are idle and which are
  # checked out (and by whom), the bounded queue of callers waiting for one,
  # restarting workers that die (with backoff), and the pool's events.
  #
  # This process is the pool (Snakepit.Pool.start_link starts it) and the
  # parent of its workers: it starts them linked (GRPCWorker's :notify mode:
  # start_link returns at once, the worker says when it is ready, so a slow
  # Python start never blocks a checkout), watches them with monitors (a
  # forged {:EXIT, ...} cannot fool it), restarts them, and stops them when
  # it stops. It answers every message and call (Snakepit.Stray), so no
  # stray message can take the pool down; a stock supervisor in between
  # would crash on one. The first workers start in init, in parallel, so
  # the pool is ready when start_link returns. A caller that exits while
  # holding a worker checks it in by dying; one that exits while waiting
  # leaves the queue.

  use GenServer

  alias Snakepit.{GRPCWorker, Stray}
  alias Snakepit.Telemetry.Naming

  @max_backoff_ms 5_000
  # A worker that lived this long before dying restarts without delay.
  @healthy_ms 5_000

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: opts[:via])

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    name = Keyword.fetch!(opts, :name)

    state = %{
      name: name,
      size: Keyword.fetch!(opts, :size),
      worker_opts: Keyword.fetch!(opts, :worker_opts),
      ready_timeout: Keyword.get(Keyword.fetch!(opts, :worker_opts), :ready_timeout, 15_000),
      max_queue: Keyword.fetch!(opts, :max_queue),
      checkout_timeout: Keyword.fetch!(opts, :checkout_timeout),
      interval: opts[:status_interval],
      # pid => %{id, monitor, started (monotonic ms), restarts}
      workers: %{},
      # pid => {id, restart count, monitor} of workers starting
      starting: %{},
      idle: :queue.new(),
      # worker pid => {caller monitor, caller pid}
      busy: %{},
      # caller monitor => %{from, enqueued, timer, correlation_id, timeout}
      waiting: %{},
      order: :queue.new(),
      # worker id => %{count, down_at, previous_pid, reason}
      down: %{},
      tick: make_ref()
    }

    started = opts[:started] || System.monotonic_time()

    case start_initial(state) do
      {:ok, state} ->
        announce(state, opts, started)
        send(self(), {:status, state.tick})
        {:ok, state}

      {:error, reason, state} ->
        stop_workers(state)
        {:stop, reason}
    end
  end

  # All first workers start at once; init waits for each to be ready (or
  # for the first failure, which fails the pool's start).
  defp start_initial(state) do
    started =
      Enum.reduce_while(ids(state), {:ok, state}, fn id, {:ok, acc} ->
        case start_worker(acc, id, 0) do
          {:ok, acc} -> {:cont, {:ok, acc}}
          {:error, reason} -> {:halt, {:error, reason, acc}}
        end
      end)

    with {:ok, state} <- started do
      await_initial(state, System.monotonic_time(:millisecond) + state.ready_timeout + 5_000)
    end
  end

  defp await_initial(%{starting: starting} = state, _deadline) when starting == %{},
    do: {:ok, state}

  defp await_initial(state, deadline) do
    left = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {:snakepit_worker_ready, pid, _id} when is_map_key(state.starting, pid) ->
        await_initial(started(state, pid), deadline)

      {:DOWN, monitor, :process, pid, reason} when is_map_key(state.starting, pid) ->
        {_, _, ^monitor} = state.starting[pid]
        {:error, start_error(reason), %{state | starting: Map.delete(state.starting, pid)}}
    after
      left -> {:error, :timeout, state}
    end
  end

  defp ids(state), do: for(i <- 1..state.size, do: "#{state.name}_#{i}")

  # Starts a worker (linked: this process is its parent); it reports ready
  # with {:snakepit_worker_ready, pid, id}.
  defp start_worker(state, id, restart_count) do
    opts = [id: id, restart_count: restart_count, notify: self()] ++ state.worker_opts

    case GRPCWorker.start_link(opts) do
      {:ok, pid} ->
        entry = {id, restart_count, Process.monitor(pid)}
        {:ok, %{state | starting: Map.put(state.starting, pid, entry)}}

      {:error, reason} ->
        {:error, reason}
    end
  end

  # A starting worker is ready.
  defp started(state, pid) do
    {{id, restarts, monitor}, starting} = Map.pop(state.starting, pid)
    state = %{state | starting: starting}

    worker = %{
      id: id,
      monitor: monitor,
      started: System.monotonic_time(:millisecond),
      restarts: restarts
    }

    state = %{state | workers: Map.put(state.workers, pid, worker)}

    :telemetry.execute(
      Naming.pool_event(:worker_ready),
      %{system_time: System.system_time()},
      %{node: node(), pool_name: state.name, worker_id: id}
    )

    hand_off(state, pid)
  end

  defp announce(state, opts, started) do
    :telemetry.execute(
      Naming.pool_event(:initialized),
      %{duration: System.monotonic_time() - started, system_time: System.system_time()},
      %{
        node: node(),
        pool_name: state.name,
        size: state.size,
        adapter_module: opts[:adapter_module],
        worker_module: GRPCWorker
      }
    )

    :telemetry.execute(
      Naming.pool_event(:init_complete),
      %{duration: System.monotonic_time() - started},
      %{node: node(), pool_name: state.name}
    )
  end

  ## Checkout and checkin

  @impl true
  def handle_call({:checkout, nil, correlation_id}, from, state),
    do: handle_call({:checkout, state.checkout_timeout, correlation_id}, from, state)

  def handle_call({:checkout, timeout, correlation_id}, {caller, _} = from, state)
      when is_integer(timeout) and timeout >= 0 do
    case pop_idle(state) do
      {:ok, pid, state} ->
        {:reply, {:ok, pid}, lend(state, pid, Process.monitor(caller), caller)}

      :empty when map_size(state.waiting) >= state.max_queue ->
        {:reply, {:error, :queue_full}, state}

      :empty ->
        monitor = Process.monitor(caller)
        timer = Process.send_after(self(), {:queue_timeout, monitor}, timeout)

        wait = %{
          from: from,
          enqueued: System.monotonic_time(),
          timer: timer,
          correlation_id: correlation_id,
          timeout: timeout
        }

        state = %{state | waiting: Map.put(state.waiting, monitor, wait)}
        state = %{state | order: :queue.in(monitor, state.order)}
        queue_event(:enqueued, %{system_time: System.system_time()}, state, correlation_id)
        {:noreply, state}
    end
  end

  def handle_call({:checkin, pid}, {caller, _}, state) do
    case state.busy do
      %{^pid => {monitor, ^caller}} ->
        Process.demonitor(monitor, [:flush])
        {:reply, :ok, hand_off(%{state | busy: Map.delete(state.busy, pid)}, pid)}

      %{^pid => _} ->
        {:reply, {:error, :not_checked_out_by_caller}, state}

      _ ->
        {:reply, {:error, :not_checked_out}, state}
    end
  end

  def handle_call(:status, _from, state) do
    {:reply,
     %{
       pool_name: state.name,
       total_workers: map_size(state.workers),
       available_workers: :queue.len(state.idle),
       busy_workers: map_size(state.busy),
       queue_depth: map_size(state.waiting),
       workers: state.workers |> Enum.sort_by(fn {_, w} -> w.id end) |> Enum.map(&elem(&1, 0))
     }, state}
  end

  def handle_call(request, _from, state), do: Stray.call(__MODULE__, request, state)

  @impl true
  def handle_cast(message, state), do: Stray.cast(__MODULE__, message, state)

  # A worker for `monitor`'s caller, who now holds it.
  defp lend(state, pid, monitor, caller),
    do: %{state | busy: Map.put(state.busy, pid, {monitor, caller})}

  # A worker is free: to the first waiter, else idle.
  defp hand_off(state, pid) do
    case next_waiter(state) do
      {:ok, monitor, wait, state} ->
        Process.cancel_timer(wait.timer)
        {caller, _} = wait.from
        GenServer.reply(wait.from, {:ok, pid})
        queue_time = System.monotonic_time() - wait.enqueued
        worker_id = state.workers[pid].id

        queue_event(:dequeued, %{queue_time: queue_time}, state, wait.correlation_id, %{
          worker_id: worker_id
        })

        lend(state, pid, monitor, caller)

      :empty ->
        %{state | idle: :queue.in(pid, state.idle)}
    end
  end

  defp next_waiter(state) do
    case :queue.out(state.order) do
      {{:value, monitor}, order} ->
        case Map.pop(state.waiting, monitor) do
          {nil, _} -> next_waiter(%{state | order: order})
          {wait, waiting} -> {:ok, monitor, wait, %{state | order: order, waiting: waiting}}
        end

      {:empty, _} ->
        :empty
    end
  end

  # Idle entries of workers that died since are skipped.
  defp pop_idle(state) do
    case :queue.out(state.idle) do
      {{:value, pid}, idle} ->
        if Map.has_key?(state.workers, pid) and not Map.has_key?(state.busy, pid),
          do: {:ok, pid, %{state | idle: idle}},
          else: pop_idle(%{state | idle: idle})

      {:empty, _} ->
        :empty
    end
  end

  ## Messages

  @impl true
  def handle_info({:queue_timeout, monitor}, state) do
    case Map.pop(state.waiting, monitor) do
      {nil, _} ->
        {:noreply, state}

      {wait, waiting} ->
        Process.demonitor(monitor, [:flush])
        GenServer.reply(wait.from, {:error, :pool_timeout})
        state = %{state | waiting: waiting}
        queue_time = System.monotonic_time() - wait.enqueued

        queue_event(:timeout, %{queue_time: queue_time}, state, wait.correlation_id, %{
          timeout_ms: wait.timeout
        })

        {:noreply, state}
    end
  end

  def handle_info({:DOWN, monitor, :process, pid, reason}, state) do
    cond do
      match?(%{monitor: ^monitor}, state.workers[pid]) ->
        {:noreply, worker_down(state, pid, reason)}

      match?({_, _, ^monitor}, state.starting[pid]) ->
        {:noreply, start_failed(state, pid, reason)}

      Map.has_key?(state.waiting, monitor) ->
        {:noreply, waiter_down(state, monitor)}

      holder = Enum.find(state.busy, fn {_, {m, _}} -> m == monitor end) ->
        {:noreply, holder_down(state, holder)}

      true ->
        {:noreply, state}
    end
  end

  def handle_info({:restart, id}, state) when is_map_key(state.down, id),
    do: {:noreply, restart(state, id)}

  def handle_info({:snakepit_worker_ready, pid, id}, state)
      when is_map_key(state.starting, pid) do
    down = state.down[id]
    state = started(%{state | down: Map.delete(state.down, id)}, pid)

    if down do
      :telemetry.execute(
        Naming.worker_event(:restarted),
        %{downtime: System.monotonic_time() - down.down_at, restart_count: down.count},
        %{
          node: node(),
          pool_name: state.name,
          worker_id: id,
          previous_pid: down.previous_pid,
          new_pid: pid,
          reason: down.reason
        }
      )
    end

    {:noreply, state}
  end

  def handle_info({:EXIT, _pid, _reason}, state) do
    # Links are how workers learn that this process (their parent) is gone;
    # their deaths are seen through monitors (an {:EXIT, ...} can be forged).
    {:noreply, state}
  end

  def handle_info({:status, tick}, %{tick: tick} = state) do
    :telemetry.execute(
      Naming.pool_event(:status),
      %{
        available_workers: :queue.len(state.idle),
        busy_workers: map_size(state.busy),
        queue_depth: map_size(state.waiting),
        total_workers: map_size(state.workers)
      },
      %{node: node(), pool_name: state.name}
    )

    if state.interval, do: Process.send_after(self(), {:status, tick}, state.interval)
    {:noreply, state}
  end

  def handle_info(message, state), do: Stray.info(__MODULE__, message, state)

  @impl true
  def terminate(_reason, state), do: stop_workers(state)

  # Stops every worker (each stops its Python process) and waits for them:
  # when the pool is stopped, none of its Python processes is left.
  defp stop_workers(state) do
    pids = Map.keys(state.workers) ++ Map.keys(state.starting)
    Enum.each(pids, &Process.exit(&1, :shutdown))
    deadline = System.monotonic_time(:millisecond) + 15_000

    for pid <- pids do
      monitor = Process.monitor(pid)
      left = max(deadline - System.monotonic_time(:millisecond), 0)

      receive do
        {:DOWN, ^monitor, :process, ^pid, _} -> :ok
      after
        left -> Process.exit(pid, :kill)
      end
    end

    :ok
  end

  defp worker_down(state, pid, reason) do
    {worker, workers} = Map.pop(state.workers, pid)

    # Its holder (if any) keeps no claim; its call already failed.
    busy =
      case Map.pop(state.busy, pid) do
        {{monitor, _}, busy} ->
          Process.demonitor(monitor, [:flush])
          busy

        {nil, busy} ->
          busy
      end

    # Quick deaths in a row back off; a worker that lived a while restarts at once.
    lived = System.monotonic_time(:millisecond) - worker.started
    count = if lived >= @healthy_ms, do: 1, else: worker.restarts + 1
    down = %{count: count, down_at: System.monotonic_time(), previous_pid: pid, reason: reason}
    Process.send_after(self(), {:restart, worker.id}, backoff(count - 1))
    %{state | workers: workers, busy: busy, down: Map.put(state.down, worker.id, down)}
  end

  # A restart that failed (the worker exited before it was ready): again, later.
  # A worker started with :notify exits {:shutdown, reason} when its start fails.
  defp start_error({:shutdown, reason}), do: reason
  defp start_error(reason), do: reason

  defp start_failed(state, pid, reason) do
    reason = start_error(reason)
    {{id, count, _}, starting} = Map.pop(state.starting, pid)
    previous = Map.get(state.down, id, %{down_at: System.monotonic_time(), previous_pid: pid})
    down = Map.merge(previous, %{count: count + 1, reason: reason})
    Process.send_after(self(), {:restart, id}, backoff(count))
    %{state | starting: starting, down: Map.put(state.down, id, down)}
  end

  defp waiter_down(state, monitor) do
    {wait, waiting} = Map.pop(state.waiting, monitor)
    Process.cancel_timer(wait.timer)
    %{state | waiting: waiting}
  end

  # The holder exited without checking in: the worker is free again.
  defp holder_down(state, {pid, _}),
    do: hand_off(%{state | busy: Map.delete(state.busy, pid)}, pid)

  defp restart(state, id) do
    case start_worker(state, id, state.down[id].count) do
      {:ok, state} ->
        state

      {:error, reason} ->
        # Refused at once (e.g. its id is still held): try again later.
        down = %{state.down[id] | reason: reason}
        Process.send_after(self(), {:restart, id}, backoff(down.count))
        %{state | down: Map.put(state.down, id, down)}
    end
  end

  defp backoff(n) when n <= 0, do: 0
  defp backoff(n), do: min(50 * Integer.pow(2, min(n, 10)), @max_backoff_ms)

  defp queue_event(name, measurements, state, correlation_id, extra \\ %{}) do
    :telemetry.execute(
      Naming.pool_event([:queue, name]),
      Map.put(measurements, :queue_depth, map_size(state.waiting)),
      Map.merge(%{node: node(), pool_name: state.name, correlation_id: correlation_id}, extra)
    )
  end
end
