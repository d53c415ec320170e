defmodule Snakepit.Telemetry.Settings do
  @moduledoc """
  The telemetry settings made from Elixir (toggle, sampling, filter), kept
  per worker id and per pool so that they last: a worker restarted under the
  same id, a re-registration and a restarted `GrpcStream` all get them again.

  Three layers, the first that has a setting of a kind wins, per kind:

    1. the worker's own (`GrpcStream.toggle("w1", false)`),
    2. its pool's (`GrpcStream.toggle({:pool, :default}, false)`),
    3. the pool's initial settings (`Snakepit.Pool`'s `:telemetry` option,
       or its configuration);

  otherwise the default (on, every event, no filter).

  The table belongs to this process, which does nothing else, so it
  outlives `GrpcStream` restarts. In a cluster the worker and pool layers
  are copied to every connected node (the newest write wins), and a node
  that connects gets every node's settings: a node that restarts has them
  back before its workers are told, and the workers already streaming are
  sent what changed (`Snakepit.Telemetry.Cluster`). `GrpcStream` reads it when a stream
  starts and writes it through `put/2` when a control is made; users call
  `GrpcStream.settings/1`, `update_sampling/3`, `toggle/2`,
  `update_filter/2` and `clear_settings/1`.
  """

  use GenServer

  alias Snakepit.Stray
  alias Snakepit.Telemetry.Control

  @table __MODULE__
  @kinds [:toggle, :sampling, :filter]
  @defaults %{toggle: {:toggle, true}, sampling: {:sampling, 1.0, []}, filter: {:filter, [], []}}

  @typedoc "Whose settings: one worker's, a pool's, or a pool's initial ones."
  @type layer ::
          {:worker, String.t()} | {:pool, atom | String.t()} | {:pool_initial, atom | String.t()}
  @type kind :: :toggle | :sampling | :filter
  @type source :: :worker | :pool | :pool_initial | :default

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  Records `control` (a `Snakepit.Telemetry.Control.t/0`) for `layer`;
  `{:error, {:invalid_setting, term}}` for anything else.
  """
  @spec put(layer, Control.t()) :: :ok | {:error, {:invalid_setting, term}}
  def put(layer, control), do: GenServer.call(__MODULE__, {:put, layer, [control]})

  @doc "Replaces every setting of `layer` with `controls` (an empty list clears it)."
  @spec replace(layer, [Control.t()]) :: :ok | {:error, {:invalid_setting, term}}
  def replace(layer, controls), do: GenServer.call(__MODULE__, {:replace, layer, controls})

  @doc """
  What is in force for a worker of `pool`, per kind: `{control, source}`.
  """
  @spec in_force(String.t(), atom | String.t()) :: %{kind => {Control.t(), source}}
  def in_force(worker_id, pool) do
    layers = [
      worker: row({:worker, worker_id}),
      pool: row({:pool, pool}),
      pool_initial: row({:pool_initial, pool})
    ]

    Map.new(@kinds, fn kind ->
      found = Enum.find_value(layers, fn {source, row} -> (c = row[kind]) && {c, source} end)
      {kind, found || {@defaults[kind], :default}}
    end)
  end

  @doc "The controls a new stream of this worker must be sent (none for defaults)."
  @spec controls(String.t(), atom | String.t()) :: [Control.t()]
  def controls(worker_id, pool) do
    for {_kind, {control, source}} <- in_force(worker_id, pool), source != :default, do: control
  end

  @doc "The settings of one layer, per kind (`nil` where it has none)."
  @spec layer(layer) :: %{kind => Control.t() | nil}
  def layer(layer), do: Map.new(@kinds, &{&1, row(layer)[&1]})

  @doc "The kind of a control."
  @spec kind(Control.t()) :: kind
  def kind(control), do: elem(control, 0)

  @doc "The settings in force as a map for people: value and where it came from."
  @spec describe(%{kind => {Control.t(), source}}) :: map
  def describe(in_force) do
    {{:toggle, on}, on_from} = in_force.toggle
    {{:sampling, rate, patterns}, sampling_from} = in_force.sampling
    {{:filter, allow, deny}, filter_from} = in_force.filter

    %{
      enabled: %{value: on, from: on_from},
      sampling: %{rate: rate, patterns: patterns, from: sampling_from},
      filter: %{allow: allow, deny: deny, from: filter_from}
    }
  end

  defp row(layer) do
    case :ets.whereis(@table) != :undefined and :ets.lookup(@table, layer) do
      [{_, row, _stamp}] -> row
      _ -> %{}
    end
  end

  @doc false
  # From another node: its newer rows win (a cast: never blocks the sender).
  def merge(rows) when is_list(rows), do: GenServer.cast(__MODULE__, {:merge, rows})

  @impl true
  def init(_opts) do
    :ets.new(@table, [:named_table, :protected, :set, read_concurrency: true])
    :ok = :net_kernel.monitor_nodes(true)
    # A node that (re)starts asks the others for theirs: they may have sent
    # them on nodeup before this process was there to take them.
    broadcast(Node.list(), :sync, [node()])
    {:ok, nil}
  end

  @doc false
  # Another node asks for our shared settings.
  def sync(to) when is_atom(to), do: GenServer.cast(__MODULE__, {:sync, to})

  # Any process may call: a bad layer or control is an error, never a crash
  # that would lose every setting.
  @impl true
  def handle_call({op, layer, controls} = request, from, state) when op in [:put, :replace] do
    if layer?(layer) and Snakepit.Args.list_of?(controls, &control?/1),
      do: store(request, from, state),
      else: {:reply, {:error, {:invalid_setting, {layer, controls}}}, state}
  end

  def handle_call(request, _from, state), do: Stray.call(__MODULE__, request, state)

  defp layer?({:worker, id}), do: is_binary(id)

  defp layer?({tag, pool}) when tag in [:pool, :pool_initial],
    do: is_atom(pool) or is_binary(pool)

  defp layer?(_), do: false

  defp control?({:toggle, on}), do: is_boolean(on)
  defp control?({:sampling, rate, patterns}), do: is_float(rate) and is_list(patterns)
  defp control?({:filter, allow, deny}), do: is_list(allow) and is_list(deny)
  defp control?(_), do: false

  defp store({:put, layer, controls}, _from, state) do
    write(layer, Enum.reduce(controls, row(layer), &Map.put(&2, kind(&1), &1)))
    {:reply, :ok, state}
  end

  defp store({:replace, layer, controls}, _from, state) do
    # A cleared layer stays as an empty row: the clearing reaches other nodes.
    write(layer, Map.new(controls, &{kind(&1), &1}))
    {:reply, :ok, state}
  end

  defp write(layer, row) do
    stamp = {System.system_time(), node()}
    :ets.insert(@table, {layer, row, stamp})
    if shared?(layer), do: broadcast(Node.list(), [{layer, row, stamp}])
  end

  # A pool's initial settings come from each node's own configuration.
  defp shared?({:pool_initial, _}), do: false
  defp shared?(_), do: true

  defp broadcast(nodes, rows), do: broadcast(nodes, :merge, [rows])
  defp broadcast([], _fun, _args), do: :ok
  defp broadcast(nodes, fun, args), do: :erpc.multicast(nodes, __MODULE__, fun, args)

  defp shared_rows, do: for({layer, _, _} = r <- :ets.tab2list(@table), shared?(layer), do: r)

  @impl true
  def handle_cast({:merge, rows}, state) when is_list(rows) do
    changed =
      for {layer, row, {time, from} = stamp} <- rows,
          layer?(layer) and shared?(layer) and is_map(row) and is_integer(time) and is_atom(from),
          Enum.all?(row, fn {k, c} -> control?(c) and kind(c) == k end),
          newer?(layer, stamp) do
        :ets.insert(@table, {layer, row, stamp})
        layer
      end

    if changed != [], do: Snakepit.Telemetry.GrpcStream.settings_changed(changed)
    {:noreply, state}
  end

  def handle_cast({:sync, to}, state) when is_atom(to) do
    if to in Node.list(), do: broadcast([to], shared_rows())
    {:noreply, state}
  end

  def handle_cast(message, state), do: Stray.cast(__MODULE__, message, state)

  # A node that connects gets ours (and sends us its own).
  @impl true
  def handle_info({:nodeup, node}, state) do
    broadcast([node], shared_rows())
    {:noreply, state}
  end

  def handle_info({:nodedown, _node}, state), do: {:noreply, state}
  def handle_info(message, state), do: Stray.info(__MODULE__, message, state)

  defp newer?(layer, stamp) do
    case :ets.lookup(@table, layer) do
      [{_, _, mine}] -> stamp > mine
      [] -> true
    end
  end
end
