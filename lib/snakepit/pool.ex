defmodule Snakepit.Pool do
  @moduledoc """
  A named pool of Python workers (`Snakepit.GRPCWorker`). A worker serves
  one caller at a time: `execute/4` checks one out, calls the tool and
  checks it in; `checkout/2` and `checkin/2` hold one for longer work.
  Callers beyond the free workers wait in a bounded queue, in order, for at
  most `:checkout_timeout` ms (`{:error, :pool_timeout}`). A worker that dies
  is restarted under the same id, at once if it had run a while, with
  backoff (up to 5 s) if it keeps dying; a caller that exits while holding
  a worker gives it back.

      children = [{Snakepit.Pool, name: :default, size: 2}]
      {:ok, result} = Snakepit.Pool.execute(:default, "predict", %{x: 1})

  or from configuration (started with the application):

      config :snakepit_telemetry, pools: [default: [size: 2]]

  ## Options

    * `:name` - pool name, an atom (default `:default`)
    * `:size` - number of workers (default 2)
    * `:python` - interpreter (default `Snakepit.Python.executable/0`)
    * `:adapter_module` - Python module whose tools the workers load
      (`grpc_server.py --tool-module`), e.g. `"my_app.tools"`; a module that
      cannot be imported fails the worker's start with one error entry that
      names it and the path searched
    * `:python_path` - folders put on the workers' `PYTHONPATH` (where the
      adapter module lives), e.g. `[Path.join(File.cwd!(), "priv/python")]`
    * `:worker_args`, `:env`, `:stream`, `:ready_timeout`, `:demo_tools`,
      `:max_delay_ms` - passed
      to each worker (see `Snakepit.GRPCWorker.start_link/1`)
    * `:status_interval` - ms between `[:snakepit, :pool, :status]` events
      (default 5000; `nil` disables)
    * `:checkout_timeout` - ms a caller may wait for a worker (default 5000;
      `execute/4` and `checkout/2` take it per call too)
    * `:max_queue` - callers that may wait at once (default 1000; one more
      gets `{:error, :queue_full}`)
    * `:telemetry` - the workers' initial telemetry settings:
      `[enabled: false, sampling: 0.1 | {0.1, ["python.*"]}, filter: [deny: ["python.gc.*"]]]`.
      Controls made later for the pool (`GrpcStream.toggle({:pool, name}, ...)`)
      or for one worker override them (see `Snakepit.Telemetry.Settings`)

  Events: `[:snakepit, :pool, :initialized]` once all workers are up,
  `[:snakepit, :pool, :worker_ready]` for each worker that is (again) ready,
  `[:snakepit, :pool, :worker, :restarted]` (`downtime`, `restart_count`),
  `[:snakepit, :pool, :queue, :enqueued | :dequeued | :timeout]`
  (`queue_time`, `queue_depth`) and `[:snakepit, :pool, :status]` (idle,
  busy, queued) at start and every `:status_interval`.
  """

  alias Snakepit.Telemetry.{Control, Naming, Settings}

  @options [
    :name,
    :size,
    :python,
    :python_path,
    :adapter_module,
    :worker_args,
    :env,
    :stream,
    :ready_timeout,
    :shutdown_grace,
    :status_interval,
    :demo_tools,
    :max_delay_ms,
    :telemetry,
    :checkout_timeout,
    :max_queue
  ]
  @max_size 256
  @checkout_timeout 5_000

  @doc """
  Starts the pool. Returns `{:error, reason}` for an unknown option or a
  bad value (`:size` must be 1 to #{@max_size}, `:name` an atom).
  """
  def start_link(opts) do
    with {:ok, opts} <- validate(opts),
         do: Snakepit.Pool.Manager.start_link(manager_options(opts))
  end

  defp validate(opts) do
    name = if Keyword.keyword?(opts), do: Keyword.get(opts, :name, :default)

    cond do
      not Keyword.keyword?(opts) ->
        {:error, {:invalid_options, opts}}

      bad = Enum.find(opts, fn {k, _} -> k not in @options end) ->
        {:error, {:unknown_option, bad}}

      not is_atom(name) or is_nil(name) ->
        {:error, {:invalid_name, name}}

      not match?(n when is_integer(n) and n in 1..@max_size, Keyword.get(opts, :size, 2)) ->
        {:error, {:invalid_size, Keyword.get(opts, :size)}}

      not match?(i when is_nil(i) or (is_integer(i) and i > 0), opts[:status_interval]) ->
        {:error, {:invalid_status_interval, opts[:status_interval]}}

      not timeout?(Keyword.get(opts, :checkout_timeout, @checkout_timeout)) ->
        {:error, {:invalid_option, {:checkout_timeout, opts[:checkout_timeout]}}}

      not match?(n when is_integer(n) and n >= 0, Keyword.get(opts, :max_queue, 1_000)) ->
        {:error, {:invalid_option, {:max_queue, opts[:max_queue]}}}

      not match?(m when is_nil(m) or is_binary(m), opts[:adapter_module]) ->
        {:error, {:invalid_adapter_module, opts[:adapter_module]}}

      true ->
        with {:ok, controls} <- initial_telemetry(Keyword.get(opts, :telemetry, [])) do
          {:ok, opts |> Keyword.put(:name, name) |> Keyword.put(:telemetry, controls)}
        end
    end
  end

  # The :telemetry option as controls (Snakepit.Telemetry.Control).
  defp initial_telemetry(opts) when is_list(opts) do
    if Keyword.keyword?(opts) do
      Enum.reduce_while(opts, {:ok, []}, fn {key, value}, {:ok, acc} ->
        case initial_control(key, value) do
          {:ok, control} -> {:cont, {:ok, [control | acc]}}
          {:error, reason} -> {:halt, {:error, {:invalid_telemetry, {key, reason}}}}
        end
      end)
    else
      {:error, {:invalid_telemetry, opts}}
    end
  end

  defp initial_telemetry(other), do: {:error, {:invalid_telemetry, other}}

  defp initial_control(:enabled, on), do: Control.toggle(on)
  defp initial_control(:sampling, {rate, patterns}), do: Control.sampling(rate, patterns)
  defp initial_control(:sampling, rate), do: Control.sampling(rate)
  defp initial_control(:filter, opts), do: Control.filter(opts)
  defp initial_control(key, _), do: {:error, {:unknown_option, key}}

  @doc false
  def child_spec(opts) do
    %{
      id: {__MODULE__, Keyword.get(opts, :name, :default)},
      start: {__MODULE__, :start_link, [opts]},
      type: :worker,
      # Its workers stop their Python processes (each within its grace).
      shutdown: 30_000
    }
  end

  @doc """
  Checks a worker out, calls `tool` on it with `params` and checks it in:
  the everyday call. Options: `:checkout_timeout` (ms to wait for a worker)
  and those of `Snakepit.GRPCWorker.execute/4` (`:correlation_id`,
  `:timeout`, ...). Errors: `{:error, :pool_timeout | :queue_full |
  :no_pool}` and those of the call.
  """
  @spec execute(term, String.t(), map | keyword, keyword) :: {:ok, term} | {:error, term}
  def execute(pool, tool, params \\ %{}, opts \\ []) do
    with true <- Keyword.keyword?(opts) || {:error, {:invalid_options, opts}},
         {:ok, worker} <- checkout(pool, Keyword.take(opts, [:checkout_timeout, :correlation_id])) do
      try do
        Snakepit.GRPCWorker.execute(worker, tool, params, Keyword.delete(opts, :checkout_timeout))
      after
        checkin(pool, worker)
      end
    end
  end

  @doc """
  Takes a worker for the calling process alone: `{:ok, pid}` at once when
  one is free, else after waiting in the pool's queue. Give it back with
  `checkin/2` (or by exiting). Options: `:checkout_timeout` (ms, default the
  pool's), `:correlation_id` (put on the queue events). Errors:
  `{:error, :pool_timeout}` (none came free in time), `:queue_full`,
  `:no_pool` (any term is accepted as the pool name; nothing is created
  from it).
  """
  @spec checkout(term, keyword) ::
          {:ok, pid} | {:error, :pool_timeout | :queue_full | :no_pool | term}
  def checkout(pool \\ :default, opts \\ []) do
    with true <- Keyword.keyword?(opts) || {:error, {:invalid_options, opts}},
         {:ok, manager} <- manager(pool),
         {:ok, timeout} <- checkout_timeout(opts),
         {:ok, correlation_id} <- correlation_id(opts) do
      # The manager answers by its own timer (nil: the pool's default).
      call(
        manager,
        {:checkout, timeout, correlation_id},
        if(timeout, do: timeout + 5_000, else: :infinity)
      )
    end
  end

  @doc "Gives back a worker taken with `checkout/2`."
  @spec checkin(term, pid) ::
          :ok | {:error, :not_checked_out | :not_checked_out_by_caller | :no_pool}
  def checkin(pool, worker) when is_pid(worker) do
    with {:ok, manager} <- manager(pool), do: call(manager, {:checkin, worker}, 5_000)
  end

  def checkin(_pool, _worker), do: {:error, :not_checked_out}

  @doc "The pids of the pool's live workers, by worker id."
  @spec workers(term) :: [pid]
  def workers(pool \\ :default) do
    case status_of(pool) do
      {:ok, status} -> status.workers
      _ -> []
    end
  end

  @doc """
  `%{pool_name, total_workers, available_workers, busy_workers,
  queue_depth, python_pids}` (all zero for an unknown pool).
  """
  @spec status(term) :: map
  def status(pool \\ :default) do
    case status_of(pool) do
      {:ok, status} ->
        pids =
          for w <- status.workers,
              {:ok, info} <- [Snakepit.GRPCWorker.info(w)],
              do: info.python_pid

        status |> Map.delete(:workers) |> Map.put(:python_pids, pids)

      _ ->
        %{
          pool_name: pool,
          total_workers: 0,
          available_workers: 0,
          busy_workers: 0,
          queue_depth: 0,
          python_pids: []
        }
    end
  end

  @doc "Stops the pool and all its workers (and their Python processes)."
  @spec stop(term) :: :ok | {:error, :no_pool}
  def stop(pool \\ :default) do
    case manager(pool) do
      {:ok, manager} -> GenServer.stop(manager, :normal, 60_000)
      error -> error
    end
  catch
    :exit, _ -> {:error, :no_pool}
  end

  defp status_of(pool) do
    with {:ok, manager} <- manager(pool), do: {:ok, call(manager, :status, 5_000)}
  end

  defp checkout_timeout(opts) do
    case Keyword.fetch(opts, :checkout_timeout) do
      {:ok, t} ->
        if timeout?(t), do: {:ok, t}, else: {:error, {:invalid_option, {:checkout_timeout, t}}}

      :error ->
        {:ok, nil}
    end
  end

  defp correlation_id(opts) do
    case opts[:correlation_id] do
      id when is_nil(id) or (is_binary(id) and byte_size(id) <= 128) -> {:ok, id}
      other -> {:error, {:invalid_option, {:correlation_id, other}}}
    end
  end

  defp timeout?(t), do: is_integer(t) and t >= 0 and t <= 3_600_000

  # A call to a manager that is gone is "no pool", never an exit.
  defp call(manager, request, timeout) do
    GenServer.call(manager, request, timeout)
  catch
    :exit, {:timeout, _} -> {:error, :timeout}
    :exit, _ -> {:error, :no_pool}
  end

  # A pool is its manager process, registered in Snakepit.Registry under
  # {:pool, name}. A lookup never makes an atom from the name.
  defp manager(pool) do
    case Registry.lookup(Snakepit.Registry, {:pool, pool}) do
      [{pid, _}] -> {:ok, pid}
      [] -> {:error, :no_pool}
    end
  end

  defp via(key, pool), do: {:via, Registry, {Snakepit.Registry, {key, pool}}}

  defp manager_options(opts) do
    name = Keyword.fetch!(opts, :name)
    started = System.monotonic_time()

    :telemetry.execute(Naming.pool_event(:init_started), %{system_time: System.system_time()}, %{
      node: node(),
      pool_name: name
    })

    # Before the workers start: their first streams carry these settings.
    :ok = Settings.replace({:pool_initial, name}, Keyword.get(opts, :telemetry, []))

    worker_args =
      Keyword.get(opts, :worker_args, []) ++
        if mod = opts[:adapter_module], do: ["--tool-module", mod], else: []

    worker_opts =
      [pool_name: name, args: worker_args] ++
        Keyword.take(opts, [
          :python,
          :python_path,
          :env,
          :stream,
          :ready_timeout,
          :shutdown_grace,
          :demo_tools,
          :max_delay_ms
        ])

    [
      name: name,
      via: via(:pool, name),
      size: Keyword.get(opts, :size, 2),
      worker_opts: worker_opts,
      started: started,
      adapter_module: opts[:adapter_module],
      max_queue: Keyword.get(opts, :max_queue, 1_000),
      checkout_timeout: Keyword.get(opts, :checkout_timeout, @checkout_timeout),
      status_interval: Keyword.get(opts, :status_interval, 5_000)
    ]
  end
end
