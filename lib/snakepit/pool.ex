defmodule Snakepit.Pool do
  @moduledoc """
  A named pool of Python workers (`Snakepit.GRPCWorker`), with round-robin
  `checkout/1`.

      children = [{Snakepit.Pool, name: :default, size: 2}]

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
    * `:telemetry` - the workers' initial telemetry settings:
      `[enabled: false, sampling: 0.1 | {0.1, ["python.*"]}, filter: [deny: ["python.gc.*"]]]`.
      Controls made later for the pool (`GrpcStream.toggle({:pool, name}, ...)`)
      or for one worker override them (see `Snakepit.Telemetry.Settings`)

  Events: `[:snakepit, :pool, :initialized]` once all workers are up,
  `[:snakepit, :pool, :status]` at start and every `:status_interval`.
  """

  use Supervisor

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
    :telemetry
  ]
  @max_size 256

  @doc """
  Starts the pool. Returns `{:error, reason}` for an unknown option or a
  bad value (`:size` must be 1 to #{@max_size}, `:name` an atom).
  """
  def start_link(opts) do
    with {:ok, opts} <- validate(opts) do
      name = Keyword.fetch!(opts, :name)
      Supervisor.start_link(__MODULE__, opts, name: sup_name(name, :counters.new(1, [])))
    end
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
      type: :supervisor
    }
  end

  @doc """
  A live worker of the pool, round robin: `{:ok, pid}` or `{:error, reason}`.
  Any term is accepted as the pool name (nothing is created from it).
  """
  @spec checkout(atom) :: {:ok, pid} | {:error, :no_workers | :no_pool}
  def checkout(pool \\ :default) do
    case lookup(pool) do
      nil ->
        {:error, :no_pool}

      {sup, counter} ->
        case children(sup) do
          [] ->
            {:error, :no_workers}

          workers ->
            n = :counters.get(counter, 1)
            :counters.add(counter, 1, 1)
            {:ok, Enum.at(workers, rem(n, length(workers)))}
        end
    end
  end

  @doc "The pids of the pool's live workers."
  @spec workers(atom) :: [pid]
  def workers(pool \\ :default) do
    case lookup(pool) do
      nil -> []
      {sup, _} -> children(sup)
    end
  end

  defp children(sup) do
    for {{Snakepit.GRPCWorker, _}, pid, _, _} <- Supervisor.which_children(sup),
        is_pid(pid),
        do: pid
  catch
    :exit, _ -> []
  end

  # Pools are registered in Snakepit.Registry under {:pool, name}, with their
  # round-robin counter: a lookup never makes an atom from the name.
  defp lookup(pool) do
    case Registry.lookup(Snakepit.Registry, {:pool, pool}) do
      [{sup, counter}] -> {sup, counter}
      [] -> nil
    end
  end

  @doc "`%{pool_name, total_workers, available_workers, python_pids}`."
  @spec status(atom) :: map
  def status(pool \\ :default) do
    workers = workers(pool)

    pids = for w <- workers, {:ok, info} <- [Snakepit.GRPCWorker.info(w)], do: info.python_pid

    %{
      pool_name: pool,
      total_workers: length(workers),
      available_workers: length(pids),
      python_pids: pids
    }
  end

  @doc "Stops the pool and all its workers (and their Python processes)."
  @spec stop(atom) :: :ok | {:error, :no_pool}
  def stop(pool \\ :default) do
    case lookup(pool) do
      nil -> {:error, :no_pool}
      {sup, _} -> Supervisor.stop(sup)
    end
  catch
    :exit, _ -> {:error, :no_pool}
  end

  defp sup_name(pool, counter), do: {:via, Registry, {Snakepit.Registry, {:pool, pool}, counter}}

  @impl true
  def init(opts) do
    name = Keyword.fetch!(opts, :name)
    size = Keyword.get(opts, :size, 2)
    started = System.monotonic_time()
    # Before the workers start: their first streams carry these settings.
    :ok = Settings.replace({:pool_initial, name}, Keyword.get(opts, :telemetry, []))

    :telemetry.execute(Naming.pool_event(:init_started), %{system_time: System.system_time()}, %{
      node: node(),
      pool_name: name
    })

    worker_args =
      Keyword.get(opts, :worker_args, []) ++
        if mod = opts[:adapter_module], do: ["--tool-module", mod], else: []

    workers =
      for i <- 1..size do
        worker_opts =
          [
            id: "#{name}_#{i}",
            pool_name: name,
            args: worker_args
          ] ++
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

        Snakepit.GRPCWorker.child_spec(worker_opts)
      end

    monitor =
      {Snakepit.Pool.Monitor,
       name: name,
       size: size,
       started: started,
       adapter_module: opts[:adapter_module],
       status_interval: Keyword.get(opts, :status_interval, 5_000)}

    Supervisor.init(workers ++ [monitor],
      strategy: :one_for_one,
      max_restarts: 10,
      max_seconds: 10
    )
  end
end
