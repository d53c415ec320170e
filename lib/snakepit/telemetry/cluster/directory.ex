defmodule Snakepit.Telemetry.Cluster.Directory do
  @moduledoc false
  # Where each remote worker id was last seen, so a call for a worker whose
  # node has gone answers {:error, {:nodedown, node}} rather than
  # :unknown_worker (:pg forgets a node's members the moment it goes down).
  # Refreshed from :pg every second and on every lookup; an entry of a node
  # that is gone is kept for an hour, or until the id appears elsewhere.

  use GenServer

  alias Snakepit.Stray
  alias Snakepit.Telemetry.Cluster

  @table __MODULE__
  @refresh_ms 1_000
  @keep_ms 3_600_000

  def start_link(_ \\ []), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc "Records that `worker_id` streams on `node`."
  def seen(worker_id, node) do
    if :ets.whereis(@table) != :undefined,
      do: :ets.insert(@table, {worker_id, node, System.monotonic_time(:millisecond)})

    :ok
  end

  @doc "The node `worker_id` was last seen on, if any."
  def last_node(worker_id) do
    case :ets.whereis(@table) != :undefined and :ets.lookup(@table, worker_id) do
      [{_, node, _}] -> node
      _ -> nil
    end
  end

  @impl true
  def init(_) do
    :ets.new(@table, [:named_table, :public, :set])
    Process.send_after(self(), :refresh, @refresh_ms)
    {:ok, nil}
  end

  @impl true
  def handle_info(:refresh, state) do
    now = System.monotonic_time(:millisecond)

    for {:worker, id} <- safe_groups(),
        pid <- :pg.get_members(Cluster.scope(), {:worker, id}),
        node(pid) != node(),
        do: seen(id, node(pid))

    up = MapSet.new([node() | Node.list()])
    :ets.select_delete(@table, [{{:_, :"$1", :"$2"}, [{:<, :"$2", now - @keep_ms}], [true]}])
    # An entry on a live node that no longer streams it is stale at once.
    for {id, n, _} <- :ets.tab2list(@table),
        MapSet.member?(up, n),
        Cluster.owner(id) == nil,
        do: :ets.delete(@table, id)

    Process.send_after(self(), :refresh, @refresh_ms)
    {:noreply, state}
  end

  def handle_info(message, state), do: Stray.info(__MODULE__, message, state)

  @impl true
  def handle_call(request, _from, state), do: Stray.call(__MODULE__, request, state)

  @impl true
  def handle_cast(message, state), do: Stray.cast(__MODULE__, message, state)

  defp safe_groups do
    :pg.which_groups(Cluster.scope())
  rescue
    ArgumentError -> []
  end
end
