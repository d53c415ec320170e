defmodule Snakepit.Telemetry.GrpcStream do
  @moduledoc """
  Receives each registered worker's telemetry over gRPC and emits it as
  `:telemetry` events; tunes workers at run time.

  The Rust NIF does the work off the schedulers: one task per worker opens
  the worker's telemetry stream (`StreamTelemetryBatched`, falling back to the
  stock `StreamTelemetry`), validates and enriches every event and sends
  ready-made batches here. This GenServer only calls `:telemetry.execute/3`
  for each event and returns credit, so at most `:credit` batches per stream
  are ever in its mailbox; when it falls behind, the Rust task stops reading
  and the worker's bounded queue drops (counted, see `stats/1`).

  A broken stream is reopened with exponential backoff while the worker is
  registered; settings made with `update_sampling/3`, `toggle/2` and
  `update_filter/2` are replayed on the new connection. The catalog events
  `[:snakepit, :grpc, :stream, :opened | :closed]` and
  `[:snakepit, :grpc, :connection, :established | :lost | :reconnected]`
  describe what happened.

  If this process dies, its stream handles are released and every Rust task
  ends; after the supervisor restarts it, workers register again.

  ## Example

      {:ok, _} = GrpcStream.register_worker("127.0.0.1:50051", %{worker_id: "w1", pool_name: :default})
      :ok = GrpcStream.update_sampling("w1", 0.1)
      :ok = GrpcStream.update_filter("w1", deny: ["python.gc.*"])
      GrpcStream.stats("w1")
  """

  use GenServer
  require Logger

  alias Snakepit.Stray
  alias Snakepit.Telemetry.{Cluster, Control, Native, Settings}
  alias Snakepit.Telemetry.GrpcStream.Registration

  @table __MODULE__.Registry
  @handles __MODULE__.Handles
  @call_timeout 5_000
  # Words (8 bytes): a heap that holds one full batch's dispatch garbage,
  # kept with the fragments under the 128k words above which the BEAM
  # collects on a dirty scheduler; see init/1.
  @min_heap_words 65_536
  @collect_above_words 32_768
  @unregister_timeout 2_000

  @typedoc "A registered worker's id."
  @type worker_id :: String.t()
  @typedoc "A worker id, or `{:pool, name}` for every current and future worker of a pool."
  @type target :: worker_id | {:pool, atom | String.t()}
  @type error :: {:error, term}

  ## Public API

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc false
  def child_spec(opts), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}}

  @doc """
  Starts receiving the telemetry of the worker listening at `endpoint`
  (`"host:port"`).

  `worker_ctx` identifies the worker and enriches its events:
  `:worker_id` (required, a non-empty UTF-8 string of at most 128 bytes),
  `:pool_name` (an atom or a string of at most 128 bytes), `:python_pid`,
  `:python_port`.

  ## Options

    * `:owner` - a local pid: the stream ends when it exits, and while it
      lives no other owner may take the worker id (`GRPCWorker` passes itself)
    * `:token` - the worker's token (a string or `Snakepit.Auth.Token`), sent
      on the stream's RPC; `nil` (default) for a worker started with `--no-auth`
    * `:tls` - TLS to a worker on another host (`Snakepit.TLS`: `ca_file`,
      optional `cert_file` + `key_file`, `server_name`)
    * `:insecure` - `true` allows plain text to a non-loopback host
      (otherwise `{:error, {:insecure_endpoint, endpoint}}`)
    * `:rpc` - `:auto` (default: batched, stock on UNIMPLEMENTED), `:batched`, `:stock`
    * `:max_batch` - events per delivered batch, at most (default 512, up to 65,536)
    * `:credit` - batches outstanding at this process, at most (default 4, up to 1024)
    * `:connect_timeout_ms` / `:open_timeout_ms` - default 5000 each
    * `:backoff_initial_ms` / `:backoff_max_ms` - reconnect backoff (default 100 / 5000)
    * `:keepalive_interval_ms` / `:keepalive_timeout_ms` - HTTP/2 pings on an
      idle stream, and how long an unanswered one may wait before the
      connection counts as dead (default 330,000 / 20,000: a grpcio server's
      default policy refuses pings more often than every 5 minutes)
    * `:max_frame_bytes` - largest accepted gRPC frame (default 4 MiB, up to 64 MiB)
    * `:window_bytes` - HTTP/2 stream window: how much a worker may send
      ahead of our reading (default 256 KiB, 16 KiB to 16 MiB)

  Defaults can be set with `config :snakepit_telemetry, :grpc_stream, [...]`.

  Registering a worker id again with the same arguments returns the same
  stream id; with other arguments (a worker restarted on a new port) the old
  stream is stopped and replaced, unless another live `:owner` holds the id:
  `{:error, {:already_registered, endpoint}}`. Other errors: `{:error,
  reason}` for a bad argument (nothing is registered), `{:error, :timeout}`
  (GrpcStream did not answer within 5 s; the request is withdrawn). The
  connection is made in the background: a worker that is not up yet is
  retried with backoff.
  """
  @spec register_worker(String.t(), map | keyword, keyword) :: {:ok, pos_integer} | error
  def register_worker(endpoint, worker_ctx, opts \\ []) do
    request = make_ref()

    try do
      GenServer.call(__MODULE__, {:register, endpoint, worker_ctx, opts, request}, @call_timeout)
    catch
      :exit, {:timeout, _} ->
        # The request may still be handled: take it back, so a caller told
        # :timeout never leaves a registration behind.
        GenServer.cast(__MODULE__, {:cancel_register, request})
        {:error, :timeout}

      :exit, {reason, _} when reason in [:noproc, :normal, :shutdown] ->
        {:error, :not_running}
    end
  end

  @doc """
  Stops the worker's stream. Returns once its Rust task has ended (or after
  #{@unregister_timeout} ms). `{:error, :unknown_worker}` if not registered.
  """
  @spec unregister_worker(worker_id) :: :ok | error
  def unregister_worker(worker_id) when is_binary(worker_id) do
    GenServer.call(__MODULE__, {:unregister, worker_id}, @unregister_timeout + 1_000)
  catch
    :exit, {:timeout, _} -> {:error, :timeout}
    :exit, _ -> {:error, :not_running}
  end

  def unregister_worker(other), do: {:error, {:invalid_worker_id, other}}

  @doc """
  Sets the sampling rate (0.0 to 1.0) of a worker, or of every current and
  future worker of a pool (`{:pool, name}`); with `patterns`, only events
  whose name matches one of the globs are sampled, others pass. Patterns are
  Python names (`"python.call.*"`) or Elixir ones (`"snakepit.python.call.*"`).

      GrpcStream.update_sampling("w1", 0.1, ["python.call.*"])
      GrpcStream.update_sampling({:pool, :default}, 0.5)

  Settings last (`Snakepit.Telemetry.Settings`): a worker restarted under
  the same id, a re-registration and a restarted `GrpcStream` get them
  again. A worker's own setting of a kind overrides its pool's;
  `settings/1` says what is in force and where it came from,
  `clear_settings/1` removes a worker's or pool's own.
  """
  @spec update_sampling(target, number, [String.t()]) :: :ok | error
  def update_sampling(target, rate, patterns \\ []) do
    with {:ok, control} <- Control.sampling(rate, patterns), do: control(target, control)
  end

  @doc "Turns the telemetry of a worker, or of a pool (`{:pool, name}`), on or off."
  @spec toggle(target, boolean) :: :ok | error
  def toggle(target, enabled) do
    with {:ok, control} <- Control.toggle(enabled), do: control(target, control)
  end

  @doc """
  Sets allow/deny globs over Python event names; deny wins.

  ## Options

    * `:allow` - globs; empty (default) allows everything
    * `:deny` - globs (default `[]`)
  """
  @spec update_filter(target, keyword) :: :ok | error
  def update_filter(target, opts) do
    with {:ok, control} <- Control.filter(opts), do: control(target, control)
  end

  @doc """
  The settings in force for a registered worker, and where each came from
  (`:worker`, `:pool`, `:pool_initial` or `:default`):

      {:ok, %{enabled: %{value: true, from: :default},
              sampling: %{rate: 0.5, patterns: [], from: :pool},
              filter: %{allow: [], deny: ["python.gc.*"], from: :worker}}}

  For `{:pool, name}`: the settings a new worker of that pool would get.
  `{:error, :unknown_worker}` for a worker id that is not registered.
  """
  @spec settings(target) :: {:ok, map} | error
  def settings({:pool, pool} = target) do
    with :ok <- pool_name(target), do: {:ok, Settings.describe(Settings.in_force(nil, pool))}
  end

  def settings(worker_id) do
    case local_settings(worker_id) do
      {:error, :unknown_worker} -> Cluster.forward(worker_id, :local_settings, [worker_id])
      result -> result
    end
  end

  @doc false
  def local_settings(worker_id) do
    with {:ok, entry} <- lookup(worker_id) do
      {:ok, Settings.describe(Settings.in_force(worker_id, entry.ctx[:pool_name]))}
    end
  end

  @doc """
  Removes the settings made for a worker (or for `{:pool, name}`): the next
  layer applies again (its pool's, the pool's initial settings, the default),
  and is sent to the affected registered workers at once.
  """
  @spec clear_settings(target) :: :ok | error
  def clear_settings({:pool, pool} = target) do
    with :ok <- pool_name(target) do
      :ok = Settings.replace(target, [])
      :ok = local_pool_control(target, [:toggle, :sampling, :filter])

      cluster_result(
        Cluster.multicall(
          :local_pool_control,
          [target, [:toggle, :sampling, :filter]],
          Cluster.pool_nodes(pool)
        )
      )
    end
  end

  def clear_settings(worker_id) do
    case local_clear(worker_id) do
      {:error, :unknown_worker} -> Cluster.forward(worker_id, :local_clear, [worker_id])
      result -> result
    end
  end

  @doc false
  def local_clear(worker_id) do
    with {:ok, entry} <- lookup(worker_id) do
      :ok = Settings.replace({:worker, worker_id}, [])
      resend(entry, [:toggle, :sampling, :filter])
    end
  end

  @doc """
  The registered streams, one map per worker, sorted by worker id:

      [%{worker_id: "w1", endpoint: "127.0.0.1:50051", pool_name: :default,
         state: :open, rpc: "StreamTelemetryBatched", events_delivered: 1200,
         rejected: 0, python_dropped: 0, reconnects: 0, last_error: nil}]

  `state` is `:connecting`, `:open`, `:backoff` or `:ended`; `node` is the
  node that streams it. `list_streams(scope: :cluster)` asks every
  connected node too (`Snakepit.Telemetry.Cluster`) and returns
  `%{streams: rows, unreachable: nodes}`: what the nodes that answered
  said, and the nodes that did not.
  """
  @spec list_streams(keyword) :: [map] | %{streams: [map], unreachable: [node]} | error
  def list_streams(opts \\ [])

  def list_streams(scope: :cluster) do
    {answers, unreachable} = Cluster.multicall(:list_streams, [])
    rows = list_streams() ++ Enum.flat_map(answers, fn {_node, rows} -> List.wrap(rows) end)
    %{streams: Enum.sort_by(rows, &{&1.worker_id, &1.node}), unreachable: unreachable}
  end

  def list_streams([]), do: local_streams()
  def list_streams(scope: :local), do: local_streams()
  def list_streams(other), do: {:error, {:invalid_option, other}}

  defp local_streams do
    for {worker_id, entry} <- rows() do
      stats = Native.stream_stats(entry.handle)

      %{
        worker_id: worker_id,
        node: node(),
        endpoint: entry.endpoint,
        pool_name: entry.ctx[:pool_name]
      }
      |> Map.merge(
        Map.take(stats, [
          :state,
          :rpc,
          :events_delivered,
          :rejected,
          :python_dropped,
          :reconnects,
          :last_error
        ])
      )
    end
    |> Enum.sort_by(& &1.worker_id)
  end

  @doc """
  Everything counted for one worker's stream: `{:ok, map}` with

    * `:frames`, `:bytes`, `:events_received`, `:events_delivered`, `:batches`
    * `:rejected` and `:rejected_by_reason` (validation, by reason)
    * `:python_emitted`, `:python_dropped`, `:python_sampled_out`,
      `:python_filtered_out`, `:python_disabled` (the worker's own running
      totals, reported on the batched RPC)
    * `:python_lost` - events a previous worker process (same address,
      another `source_id`) reported as emitted but that never arrived: lost
      with its connection, estimated from its own last reported count
    * `:accounting` - where every event the worker emitted went:
      `%{emitted, delivered, dropped: %{queue_full, sampled_out, filtered_out,
      disabled, rejected, lost_with_connection}, unaccounted, consistent}`;
      `unaccounted` is what is still buffered at the current worker or in
      flight (0 once a quiet stream settles). The worker's totals are
      untrusted: on the stock RPC, which carries none, `emitted` and
      `unaccounted` are `:unknown`; totals that add up to less than what
      arrived give `consistent: false` (and `unaccounted: 0`).
    * `:python_totals` - whether the worker ever reported totals
    * `:python_auth_rejected` - calls the worker refused for a missing or
      wrong token (someone else tried to talk to it; see `Snakepit.Auth`)
    * `:sampling_applied_by` - `:worker`, or `:nif` when the peer is on the
      stock RPC (a reference worker, which ignores sampling patterns) and a
      sampling with patterns is in force: the worker gets rate 1.0 and this
      stream samples the matching events, counted in `:nif_sampled_out`
      (and in the accounting's `sampled_out`). Toggle and filters always go
      to the worker.
    * `:connects`, `:reconnects`, `:credit_waits`, `:controls_sent`
    * `:state`, `:rpc`, `:last_error`, `:endpoint`, `:registered_at`

  or `{:error, :unknown_worker}`.
  """
  @spec stats(worker_id) :: {:ok, map} | error
  def stats(worker_id) do
    case local_stats(worker_id) do
      {:error, :unknown_worker} -> Cluster.forward(worker_id, :local_stats, [worker_id])
      result -> result
    end
  end

  @doc false
  def local_stats(worker_id) do
    case lookup(worker_id) do
      {:ok, entry} ->
        stats = Native.stream_stats(entry.handle)

        {:ok,
         Map.merge(stats, %{
           node: node(),
           endpoint: entry.endpoint,
           registered_at: entry.registered_at,
           accounting: accounting(stats)
         })}

      error ->
        error
    end
  end

  # The worker's totals are its own word: where it reports none (the stock
  # RPC) the accounting says :unknown instead of inventing a negative, and
  # totals that add up to less than what arrived are flagged, not trusted.
  defp accounting(s) do
    dropped = %{
      queue_full: s.python_dropped,
      # The worker's sampling, plus what this stream sampled itself (the
      # pattern sampling of a stock peer).
      sampled_out: s.python_sampled_out + Map.get(s, :nif_sampled_out, 0),
      filtered_out: s.python_filtered_out,
      disabled: s.python_disabled,
      rejected: s.rejected,
      lost_with_connection: s.python_lost
    }

    base = %{delivered: s.events_delivered, dropped: dropped}

    if s.python_totals do
      unaccounted = s.python_emitted - s.events_delivered - Enum.sum(Map.values(dropped))

      Map.merge(base, %{
        emitted: s.python_emitted,
        unaccounted: max(unaccounted, 0),
        consistent: unaccounted >= 0
      })
    else
      Map.merge(base, %{emitted: :unknown, unaccounted: :unknown, consistent: true})
    end
  end

  # Control frames go straight to the Rust task's channel from the caller:
  # no GenServer hop, so a busy dispatcher never delays them. They are
  # recorded first (Settings), so a later stream of the worker gets them.
  # A pool's setting is recorded here (Settings copies it to every node,
  # for the pool's future workers) and sent at once to its workers on every
  # node that has some (the :pg group {:pool, name}).
  defp control({:pool, pool} = target, control) do
    with :ok <- pool_name(target) do
      :ok = Settings.put(target, control)
      :ok = local_pool_control(target, Settings.kind(control))
      nodes = Cluster.pool_nodes(pool)

      cluster_result(
        Cluster.multicall(:local_pool_control, [target, Settings.kind(control)], nodes)
      )
    end
  end

  defp control(worker_id, control) do
    case local_control(worker_id, control) do
      {:error, :unknown_worker} ->
        Cluster.forward(worker_id, :local_control, [worker_id, control])

      result ->
        result
    end
  end

  @doc false
  # The control for a worker streamed by this node (or :unknown_worker).
  def local_control(worker_id, control) do
    with {:ok, entry} <- lookup(worker_id) do
      :ok = Settings.put({:worker, worker_id}, control)
      Native.stream_control(entry.handle, control)
    end
  end

  @doc false
  # Sends this node's workers of a pool what is in force for `kinds`.
  def local_pool_control({:pool, pool}, kinds) do
    for {_, e} <- rows(), e.ctx[:pool_name] == pool, do: resend(e, List.wrap(kinds))
    :ok
  end

  defp cluster_result({_answers, []}), do: :ok
  defp cluster_result({_answers, unreachable}), do: {:error, {:nodes_unreachable, unreachable}}

  @doc false
  # Settings arrived from another node: this node's workers get what is now
  # in force (Settings calls this; a cast, so it never waits).
  def settings_changed(layers) do
    if pid = Process.whereis(__MODULE__), do: GenServer.cast(pid, {:settings_changed, layers})
    :ok
  end

  # Sends a registered worker what is now in force for these kinds.
  defp resend(entry, kinds) do
    in_force = Settings.in_force(entry.ctx.worker_id, entry.ctx[:pool_name])

    Enum.reduce(kinds, :ok, fn kind, result ->
      {control, _source} = in_force[kind]

      case Native.stream_control(entry.handle, control) do
        :ok -> result
        error -> error
      end
    end)
  end

  defp pool_name({:pool, pool}) when is_atom(pool) and not is_nil(pool), do: :ok

  defp pool_name({:pool, pool}) when is_binary(pool) and byte_size(pool) in 1..128,
    do: if(String.valid?(pool), do: :ok, else: {:error, {:invalid_pool, pool}})

  defp pool_name({:pool, pool}), do: {:error, {:invalid_pool, pool}}

  defp lookup(worker_id) when is_binary(worker_id) do
    case :ets.whereis(@table) != :undefined and :ets.lookup(@table, worker_id) do
      [{^worker_id, entry}] -> {:ok, entry}
      _ -> {:error, :unknown_worker}
    end
  end

  defp lookup(other), do: {:error, {:invalid_worker_id, other}}

  defp rows do
    if :ets.whereis(@table) == :undefined, do: [], else: :ets.tab2list(@table)
  end

  ## Server

  @impl true
  def init(_opts) do
    # Queued batches stay out of the heap: the garbage collector would
    # otherwise copy every waiting batch (up to the credit window of every
    # stream) on each collection.
    Process.flag(:message_queue_data, :off_heap)
    # Garbage collection, measured under load (a) with 16 streams by tracing
    # this process's collections: a received batch is a heap fragment that
    # stays live while it is dispatched, and a collection that falls in the
    # middle copies it. With a 2 MiB heap every collection ran on a dirty
    # scheduler (heap and fragments over 128k words) and cost 1.3 µs per
    # event; with a heap that holds one batch's dispatch garbage and a
    # collection once a batch is done (see handle_continue), nothing is live
    # and collecting costs about 80 ns per event.
    Process.flag(:min_heap_size, @min_heap_words)
    :ets.new(@table, [:named_table, :protected, :set, read_concurrency: true])
    # Stream id -> handle, for credit. Handles live in tables, never in the
    # state: nothing an exit reason or crash report carries holds one (and
    # the NIF monitors this process, so the tasks end with it regardless).
    :ets.new(@handles, [:named_table, :protected, :set])
    {:ok, rejoin(%{stopping: %{}, owners: %{}, cluster: nil})}
  end

  # Joins the cluster's groups (the streams group and every worker id), and
  # watches the :pg scope: a scope that restarted has lost our memberships.
  defp rejoin(state) do
    case Process.whereis(Cluster.scope()) do
      nil ->
        Process.send_after(self(), :rejoin_cluster, 200)
        %{state | cluster: nil}

      pid ->
        Cluster.join_streams()
        for {worker_id, e} <- rows(), do: Cluster.join(worker_id, e.ctx[:pool_name])
        %{state | cluster: Process.monitor(pid)}
    end
  end

  @impl true
  def handle_call({:register, endpoint, ctx, opts, request}, _from, state) do
    case Registration.new(endpoint, ctx, opts) do
      {:ok, reg} -> register(reg, request, state)
      {:error, _} = error -> {:reply, error, state}
    end
  end

  def handle_call({:unregister, worker_id}, from, state) do
    case :ets.lookup(@table, worker_id) do
      [{_, entry}] ->
        {id, state} = stop_entry(entry, state)
        timer = Process.send_after(self(), {:unregister_timeout, id}, @unregister_timeout)
        {:noreply, put_in(state.stopping[id], {from, timer})}

      [] ->
        {:reply, {:error, :unknown_worker}, state}
    end
  end

  def handle_call(request, _from, state), do: Stray.call(__MODULE__, request, state)

  @impl true
  def handle_cast({:cancel_register, request}, state) do
    case :ets.match_object(@table, {:_, %{request: request}}) do
      [{_, entry}] -> {:noreply, elem(stop_entry(entry, state), 1)}
      _ -> {:noreply, state}
    end
  end

  def handle_cast({:settings_changed, layers}, state) when is_list(layers) do
    for {_, e} <- rows(),
        Enum.any?(layers, &affects?(&1, e)),
        do: resend(e, [:toggle, :sampling, :filter])

    {:noreply, state}
  end

  def handle_cast(message, state), do: Stray.cast(__MODULE__, message, state)

  defp affects?({:worker, id}, e), do: e.ctx.worker_id == id
  defp affects?({:pool, pool}, e), do: e.ctx[:pool_name] == pool
  defp affects?(_layer, _e), do: false

  @impl true
  def handle_info({:snakepit_telemetry_batch, id, events}, state) when is_list(events) do
    dispatch(events)

    case :ets.lookup(@handles, id) do
      [{_, handle}] -> Native.stream_ack(handle, 1)
      [] -> :ok
    end

    # Collect once the batch is dead (after this callback returns), when the
    # fragments of received batches have grown; small batches at low rates
    # leave it to the ordinary collections.
    {:total_heap_size, words} = Process.info(self(), :total_heap_size)

    if words > @collect_above_words,
      do: {:noreply, state, {:continue, :collect}},
      else: {:noreply, state}
  end

  def handle_info({:snakepit_telemetry_status, _id, event, measurements, metadata}, state)
      when is_list(event) and is_map(measurements) and is_map(metadata) do
    :telemetry.execute(event, measurements, metadata)
    {:noreply, state}
  end

  def handle_info({:snakepit_telemetry_ended, id, reason}, state)
      when reason in [:stopped, :owner_down] or
             (is_tuple(reason) and tuple_size(reason) == 2 and elem(reason, 0) == :panic and
                is_binary(elem(reason, 1))) do
    with {:panic, why} <- reason do
      Logger.error("telemetry stream #{inspect(id)} crashed in the NIF: panic: #{why}")
    end

    :ets.delete(@handles, id)

    case Map.pop(state.stopping, id) do
      {{from, timer}, stopping} ->
        Process.cancel_timer(timer)
        GenServer.reply(from, :ok)
        {:noreply, %{state | stopping: stopping}}

      {nil, _} ->
        {:noreply, forget_ended(state, id)}
    end
  end

  def handle_info({:unregister_timeout, id}, state) do
    case Map.pop(state.stopping, id) do
      {{from, _}, stopping} ->
        Logger.warning("telemetry stream #{id} did not confirm its end in time")
        GenServer.reply(from, :ok)
        :ets.delete(@handles, id)
        {:noreply, %{state | stopping: stopping}}

      {nil, _} ->
        {:noreply, state}
    end
  end

  # A registration's owner exited: its stream ends with it.
  def handle_info({:DOWN, monitor, :process, _, _}, %{cluster: monitor} = state) do
    Process.send_after(self(), :rejoin_cluster, 50)
    {:noreply, %{state | cluster: nil}}
  end

  def handle_info(:rejoin_cluster, %{cluster: nil} = state), do: {:noreply, rejoin(state)}

  def handle_info({:DOWN, monitor, :process, _, _}, state)
      when is_map_key(state.owners, monitor) do
    {worker_id, owners} = Map.pop(state.owners, monitor)
    state = %{state | owners: owners}

    case :ets.lookup(@table, worker_id) do
      [{_, %{monitor: ^monitor} = entry}] -> {:noreply, elem(stop_entry(entry, state), 1)}
      _ -> {:noreply, state}
    end
  end

  def handle_info(message, state), do: Stray.info(__MODULE__, message, state)

  @impl true
  def handle_continue(:collect, state) do
    :erlang.garbage_collect(self(), type: :minor)
    {:noreply, state}
  end

  # Registering an id again: the same registration is kept (idempotent); a
  # different one replaces it unless another live owner holds it, so a
  # restarted worker always streams from its current endpoint.
  defp register(reg, request, state) do
    case :ets.lookup(@table, reg.ctx.worker_id) do
      [] ->
        # Worker ids are cluster-wide: another node's stream keeps its id.
        case Cluster.owner(reg.ctx.worker_id) do
          nil -> start(reg, request, state)
          node -> {:reply, {:error, {:already_registered, {:node, node}}}, state}
        end

      [{_, %{endpoint: e, ctx: c, opts: o, owner: owner} = old}]
      when e == reg.endpoint and c == reg.ctx and o == reg.opts and owner == reg.owner ->
        {:reply, {:ok, old.id}, state}

      [{_, old}] ->
        if held_by_other?(old.owner, reg.owner) do
          {:reply, {:error, {:already_registered, old.endpoint}}, state}
        else
          {_, state} = stop_entry(old, state)
          start(reg, request, state)
        end
    end
  end

  defp held_by_other?(nil, _new), do: false
  defp held_by_other?(old, new), do: old != new and Process.alive?(old)

  defp start(reg, request, state) do
    nif_opts =
      reg.opts
      |> Map.merge(reg.ctx)
      |> Map.merge(%{endpoint: reg.endpoint, node: node()})
      |> Map.update(:token, "", &Snakepit.Auth.reveal/1)
      |> Map.update(:tls, nil, &Snakepit.TLS.to_nif/1)

    case start_stream(nif_opts) do
      {:ok, {id, handle}} -> started(reg, request, id, handle, state)
      {:error, _} = error -> {:reply, error, state}
    end
  end

  # Registration has checked every option; a NIF that refuses one anyway
  # answers the caller instead of taking this process down.
  defp start_stream(nif_opts) do
    Native.stream_start(nif_opts, self())
  rescue
    e in ArgumentError -> {:error, {:invalid_options, Exception.message(e)}}
  end

  defp started(reg, request, id, handle, state) do
    monitor = if reg.owner, do: Process.monitor(reg.owner)

    entry =
      Map.merge(reg, %{
        id: id,
        handle: handle,
        request: request,
        monitor: monitor,
        registered_at: DateTime.utc_now()
      })

    :ets.insert(@table, {reg.ctx.worker_id, entry})
    :ets.insert(@handles, {id, handle})
    Cluster.join(reg.ctx.worker_id, reg.ctx[:pool_name])
    # What was set for this worker id or its pool before (a restarted worker,
    # a re-registration, a restarted GrpcStream) is in force from its first
    # stream on.
    for c <- Settings.controls(reg.ctx.worker_id, reg.ctx[:pool_name]),
        do: Native.stream_control(handle, c)

    owners = if monitor, do: Map.put(state.owners, monitor, reg.ctx.worker_id), else: state.owners
    {:reply, {:ok, id}, %{state | owners: owners}}
  end

  # Ends a registration's stream; its handle stays in @handles until the
  # task confirms its end (in-flight batches still return credit).
  defp stop_entry(entry, state) do
    :ets.delete(@table, entry.ctx.worker_id)
    Cluster.leave(entry.ctx.worker_id, entry.ctx[:pool_name])
    Native.stream_stop(entry.handle)
    if entry.monitor, do: Process.demonitor(entry.monitor, [:flush])
    {entry.id, %{state | owners: Map.delete(state.owners, entry.monitor)}}
  end

  # A task that ended on its own (a panic): drop its registration.
  defp forget_ended(state, id) do
    for {worker_id, %{id: ^id} = entry} <- :ets.tab2list(@table) do
      :ets.delete(@table, worker_id)
      Cluster.leave(worker_id, entry.ctx[:pool_name])
    end

    state
  end

  # Batches come from the NIF, but any process can send a lookalike: what
  # is not an event is skipped.
  defp dispatch([{event, measurements, metadata} | rest])
       when is_list(event) and is_map(measurements) and is_map(metadata) do
    :telemetry.execute(event, measurements, metadata)
    dispatch(rest)
  end

  defp dispatch([_ | rest]), do: dispatch(rest)
  defp dispatch(_), do: :ok
end
