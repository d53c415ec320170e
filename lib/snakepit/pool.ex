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
      (`grpc_server.py --tool-module`), e.g. `"my_app.tools"`
    * `:worker_args`, `:env`, `:stream`, `:ready_timeout` - passed to each worker
    * `:status_interval` - ms between `[:snakepit, :pool, :status]` events
      (default 5000; `nil` disables)

  Events: `[:snakepit, :pool, :initialized]` once all workers are up,
  `[:snakepit, :pool, :status]` at start and every `:status_interval`.
  """

  use Supervisor

  alias Snakepit.Telemetry.Naming

  @doc false
  def start_link(opts) do
    name = Keyword.get(opts, :name, :default)
    Supervisor.start_link(__MODULE__, Keyword.put(opts, :name, name), name: sup_name(name))
  end

  @doc false
  def child_spec(opts) do
    %{
      id: {__MODULE__, Keyword.get(opts, :name, :default)},
      start: {__MODULE__, :start_link, [opts]},
      type: :supervisor
    }
  end

  @doc "A live worker of the pool, round robin: `{:ok, pid}` or `{:error, reason}`."
  @spec checkout(atom) :: {:ok, pid} | {:error, :no_workers | :no_pool}
  def checkout(pool \\ :default) do
    case workers(pool) do
      [] ->
        if Process.whereis(sup_name(pool)), do: {:error, :no_workers}, else: {:error, :no_pool}

      workers ->
        ref = counter(pool)
        :counters.add(ref, 1, 1)
        {:ok, Enum.at(workers, rem(:counters.get(ref, 1), length(workers)))}
    end
  end

  @doc "The pids of the pool's live workers."
  @spec workers(atom) :: [pid]
  def workers(pool \\ :default) do
    case Process.whereis(sup_name(pool)) do
      nil ->
        []

      sup ->
        for {{Snakepit.GRPCWorker, _}, pid, _, _} <- Supervisor.which_children(sup),
            is_pid(pid),
            do: pid
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
  @spec stop(atom) :: :ok
  def stop(pool \\ :default), do: Supervisor.stop(sup_name(pool))

  defp sup_name(pool), do: Module.concat(__MODULE__, pool)

  defp counter(pool) do
    key = {__MODULE__, :rr, pool}

    case :persistent_term.get(key, nil) do
      nil ->
        ref = :counters.new(1, [:write_concurrency])
        :persistent_term.put(key, ref)
        ref

      ref ->
        ref
    end
  end

  @impl true
  def init(opts) do
    name = Keyword.fetch!(opts, :name)
    size = Keyword.get(opts, :size, 2)
    started = System.monotonic_time()

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
          ] ++ Keyword.take(opts, [:python, :env, :stream, :ready_timeout, :shutdown_grace])

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
