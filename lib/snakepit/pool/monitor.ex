defmodule Snakepit.Pool.Monitor do
  @moduledoc false
  # The pool supervisor's last child: started once every worker is up, so it
  # announces `[:snakepit, :pool, :initialized]`, then reports
  # `[:snakepit, :pool, :status]` periodically.

  use GenServer

  alias Snakepit.Telemetry.Naming

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  @impl true
  def init(opts) do
    name = Keyword.fetch!(opts, :name)

    :telemetry.execute(
      Naming.pool_event(:initialized),
      %{duration: System.monotonic_time() - opts[:started], system_time: System.system_time()},
      %{
        node: node(),
        pool_name: name,
        size: opts[:size],
        adapter_module: opts[:adapter_module],
        worker_module: Snakepit.GRPCWorker
      }
    )

    :telemetry.execute(
      Naming.pool_event(:init_complete),
      %{duration: System.monotonic_time() - opts[:started]},
      %{node: node(), pool_name: name}
    )

    # The timer's own ref tags its message: a stray :status from elsewhere
    # must not start a second periodic timer.
    tick = make_ref()
    send(self(), {:status, tick})
    {:ok, %{name: name, interval: opts[:status_interval], tick: tick}}
  end

  @impl true
  def handle_info({:status, tick}, %{tick: tick} = state) do
    status = Snakepit.Pool.status(state.name)

    :telemetry.execute(
      Naming.pool_event(:status),
      %{
        available_workers: status.available_workers,
        busy_workers: 0,
        queue_depth: 0,
        total_workers: status.total_workers
      },
      %{node: node(), pool_name: state.name}
    )

    if state.interval, do: Process.send_after(self(), {:status, tick}, state.interval)
    {:noreply, state}
  end

  def handle_info(message, state), do: Snakepit.Stray.info(__MODULE__, message, state)

  @impl true
  def handle_call(request, _from, state), do: Snakepit.Stray.call(__MODULE__, request, state)

  @impl true
  def handle_cast(message, state), do: Snakepit.Stray.cast(__MODULE__, message, state)
end
