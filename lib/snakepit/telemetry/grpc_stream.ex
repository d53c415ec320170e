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

  alias Snakepit.Telemetry.{Control, Native}

  @table __MODULE__.Registry
  # Words (8 bytes): a heap that holds one full batch's dispatch garbage,
  # kept with the fragments under the 128k words above which the BEAM
  # collects on a dirty scheduler; see init/1.
  @min_heap_words 65_536
  @collect_above_words 32_768
  @unregister_timeout 2_000
  @tuning [
    :rpc,
    :max_batch,
    :credit,
    :connect_timeout_ms,
    :open_timeout_ms,
    :backoff_initial_ms,
    :backoff_max_ms,
    :max_frame_bytes,
    :window_bytes
  ]

  @typedoc "A registered worker's id."
  @type worker_id :: String.t()
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
  `:worker_id` (required, a non-empty string), `:pool_name`, `:python_pid`,
  `:python_port`.

  ## Options

    * `:rpc` - `:auto` (default: batched, stock on UNIMPLEMENTED), `:batched`, `:stock`
    * `:max_batch` - events per delivered batch, at most (default 512)
    * `:credit` - batches outstanding at this process, at most (default 4)
    * `:connect_timeout_ms` / `:open_timeout_ms` - default 5000 each
    * `:backoff_initial_ms` / `:backoff_max_ms` - reconnect backoff (default 100 / 5000)
    * `:max_frame_bytes` - largest accepted gRPC frame (default 4 MiB)
    * `:window_bytes` - HTTP/2 stream window: how much a worker may send
      ahead of our reading (default 256 KiB)

  Defaults can be set with `config :snakepit_telemetry, :grpc_stream, [...]`.
  Returns `{:ok, stream_id}`, or `{:error, reason}` for a bad argument or a
  worker id that is already registered. The connection is made in the
  background: a worker that is not up yet is retried with backoff.
  """
  @spec register_worker(String.t(), map | keyword, keyword) :: {:ok, pos_integer} | error
  def register_worker(endpoint, worker_ctx, opts \\ []) do
    with {:ok, endpoint} <- validate_endpoint(endpoint),
         {:ok, ctx} <- validate_ctx(worker_ctx),
         {:ok, opts} <- validate_opts(opts) do
      GenServer.call(__MODULE__, {:register, endpoint, ctx, opts})
    end
  end

  @doc """
  Stops the worker's stream. Returns once its Rust task has ended (or after
  #{@unregister_timeout} ms). `{:error, :unknown_worker}` if not registered.
  """
  @spec unregister_worker(worker_id) :: :ok | error
  def unregister_worker(worker_id) when is_binary(worker_id) do
    GenServer.call(__MODULE__, {:unregister, worker_id}, @unregister_timeout + 1_000)
  end

  def unregister_worker(other), do: {:error, {:invalid_worker_id, other}}

  @doc """
  Sets the worker's sampling rate (0.0 to 1.0); with `patterns`, only events
  whose Python name matches one of the globs are sampled, others pass.

      GrpcStream.update_sampling("w1", 0.1, ["python.call.*"])
  """
  @spec update_sampling(worker_id, number, [String.t()]) :: :ok | error
  def update_sampling(worker_id, rate, patterns \\ []) do
    with {:ok, control} <- Control.sampling(rate, patterns), do: control(worker_id, control)
  end

  @doc "Turns the worker's telemetry on or off."
  @spec toggle(worker_id, boolean) :: :ok | error
  def toggle(worker_id, enabled) do
    with {:ok, control} <- Control.toggle(enabled), do: control(worker_id, control)
  end

  @doc """
  Sets allow/deny globs over Python event names; deny wins.

  ## Options

    * `:allow` - globs; empty (default) allows everything
    * `:deny` - globs (default `[]`)
  """
  @spec update_filter(worker_id, keyword) :: :ok | error
  def update_filter(worker_id, opts) do
    with {:ok, control} <- Control.filter(opts), do: control(worker_id, control)
  end

  @doc """
  The registered streams, one map per worker, sorted by worker id:

      [%{worker_id: "w1", endpoint: "127.0.0.1:50051", pool_name: :default,
         state: :open, rpc: "StreamTelemetryBatched", events_delivered: 1200,
         rejected: 0, python_dropped: 0, reconnects: 0, last_error: nil}]

  `state` is `:connecting`, `:open`, `:backoff` or `:ended`.
  """
  @spec list_streams() :: [map]
  def list_streams do
    for {worker_id, entry} <- rows() do
      stats = Native.stream_stats(entry.handle)

      %{worker_id: worker_id, endpoint: entry.endpoint, pool_name: entry.ctx[:pool_name]}
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
      disabled, rejected, lost_with_connection}, unaccounted}`; `unaccounted`
      is what is still buffered at the current worker or in flight (0 once a
      quiet stream settles)
    * `:connects`, `:reconnects`, `:credit_waits`, `:controls_sent`
    * `:state`, `:rpc`, `:last_error`, `:endpoint`, `:registered_at`

  or `{:error, :unknown_worker}`.
  """
  @spec stats(worker_id) :: {:ok, map} | error
  def stats(worker_id) do
    case lookup(worker_id) do
      {:ok, entry} ->
        stats = Native.stream_stats(entry.handle)

        {:ok,
         Map.merge(stats, %{
           endpoint: entry.endpoint,
           registered_at: entry.registered_at,
           accounting: accounting(stats)
         })}

      error ->
        error
    end
  end

  defp accounting(s) do
    dropped = %{
      queue_full: s.python_dropped,
      sampled_out: s.python_sampled_out,
      filtered_out: s.python_filtered_out,
      disabled: s.python_disabled,
      rejected: s.rejected,
      lost_with_connection: s.python_lost
    }

    %{
      emitted: s.python_emitted,
      delivered: s.events_delivered,
      dropped: dropped,
      unaccounted: s.python_emitted - s.events_delivered - Enum.sum(Map.values(dropped))
    }
  end

  # Control frames go straight to the Rust task's channel from the caller:
  # no GenServer hop, so a busy dispatcher never delays them.
  defp control(worker_id, control) do
    with {:ok, entry} <- lookup(worker_id) do
      Native.stream_control(entry.handle, control)
    end
  end

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

  ## Argument checks (in the caller)

  defp validate_endpoint(endpoint) when is_binary(endpoint) do
    with [host, port] <- String.split(endpoint, ":", parts: 2),
         true <- host != "" and not String.contains?(host, ["/", " "]),
         {port, ""} when port in 1..65_535 <- Integer.parse(port) do
      {:ok, endpoint}
    else
      _ -> {:error, {:invalid_endpoint, endpoint}}
    end
  end

  defp validate_endpoint(other), do: {:error, {:invalid_endpoint, other}}

  defp validate_ctx(ctx) when is_map(ctx) or is_list(ctx) do
    ctx = if Keyword.keyword?(ctx) or is_map(ctx), do: Map.new(ctx), else: %{}

    case ctx do
      %{worker_id: id} when is_binary(id) and id != "" and byte_size(id) <= 128 ->
        {:ok, Map.take(ctx, [:worker_id, :pool_name, :python_pid, :python_port])}

      _ ->
        {:error, {:invalid_worker_ctx, :worker_id_required}}
    end
  end

  defp validate_ctx(other), do: {:error, {:invalid_worker_ctx, other}}

  defp validate_opts(opts) when is_list(opts) do
    defaults = Application.get_env(:snakepit_telemetry, :grpc_stream, [])

    case Keyword.keyword?(opts) && Enum.find(opts, &(not valid_opt?(&1))) do
      nil -> {:ok, defaults |> Keyword.merge(opts) |> Keyword.take(@tuning) |> Map.new()}
      false -> {:error, {:invalid_options, opts}}
      bad -> {:error, {:invalid_option, bad}}
    end
  end

  defp validate_opts(other), do: {:error, {:invalid_options, other}}

  defp valid_opt?({:rpc, v}), do: v in [:auto, :batched, :stock]
  defp valid_opt?({k, v}) when k in @tuning, do: is_integer(v) and v > 0
  defp valid_opt?(_), do: false

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
    {:ok, %{by_id: %{}, stopping: %{}}}
  end

  @impl true
  def handle_call({:register, endpoint, ctx, opts}, _from, state) do
    if :ets.member(@table, ctx.worker_id) do
      {:reply, {:error, :already_registered}, state}
    else
      nif_opts = opts |> Map.merge(ctx) |> Map.merge(%{endpoint: endpoint, node: node()})

      case Native.stream_start(nif_opts, self()) do
        {:ok, {id, handle}} ->
          entry = %{
            id: id,
            handle: handle,
            endpoint: endpoint,
            ctx: ctx,
            registered_at: DateTime.utc_now()
          }

          :ets.insert(@table, {ctx.worker_id, entry})
          {:reply, {:ok, id}, put_in(state.by_id[id], handle)}

        {:error, reason} ->
          {:reply, {:error, reason}, state}
      end
    end
  rescue
    e in ArgumentError -> {:reply, {:error, {:invalid_options, Exception.message(e)}}, state}
  end

  def handle_call({:unregister, worker_id}, from, state) do
    case :ets.lookup(@table, worker_id) do
      [{_, %{id: id, handle: handle}}] ->
        :ets.delete(@table, worker_id)
        Native.stream_stop(handle)
        timer = Process.send_after(self(), {:unregister_timeout, id}, @unregister_timeout)
        {:noreply, put_in(state.stopping[id], {from, timer})}

      [] ->
        {:reply, {:error, :unknown_worker}, state}
    end
  end

  @impl true
  def handle_info({:snakepit_telemetry_batch, id, events}, state) do
    dispatch(events)
    if handle = state.by_id[id], do: Native.stream_ack(handle, 1)
    # Collect once the batch is dead (after this callback returns), when the
    # fragments of received batches have grown; small batches at low rates
    # leave it to the ordinary collections.
    {:total_heap_size, words} = Process.info(self(), :total_heap_size)

    if words > @collect_above_words,
      do: {:noreply, state, {:continue, :collect}},
      else: {:noreply, state}
  end

  def handle_info({:snakepit_telemetry_status, _id, event, measurements, metadata}, state) do
    :telemetry.execute(event, measurements, metadata)
    {:noreply, state}
  end

  def handle_info({:snakepit_telemetry_ended, id, reason}, state) do
    if String.starts_with?(reason, "panic") do
      Logger.error("telemetry stream #{id} crashed in the NIF: #{reason}")
    end

    state = %{state | by_id: Map.delete(state.by_id, id)}

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
        {:noreply, %{state | stopping: stopping, by_id: Map.delete(state.by_id, id)}}

      {nil, _} ->
        {:noreply, state}
    end
  end

  @impl true
  def handle_continue(:collect, state) do
    :erlang.garbage_collect(self(), type: :minor)
    {:noreply, state}
  end

  # A task that ended on its own (a panic): drop its registration.
  defp forget_ended(state, id) do
    :ets.match_delete(@table, {:_, %{id: id}})
    state
  end

  defp dispatch([{event, measurements, metadata} | rest]) do
    :telemetry.execute(event, measurements, metadata)
    dispatch(rest)
  end

  defp dispatch([]), do: :ok
end
