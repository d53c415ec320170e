defmodule Snakepit.Telemetry.Cluster do
  @moduledoc """
  Workers across a BEAM cluster, with the engine the BEAM has: Erlang
  distribution, `:pg` for membership and `:erpc` for calls (no cluster
  layer of our own, no external service).

  Each node's `GrpcStream` joins the `:pg` groups `{:worker, id}` and
  `{:pool, name}` of every worker it streams (in the scope `#{inspect(__MODULE__)}`), so from any
  node:

    * `GrpcStream.update_sampling/3`, `toggle/2`, `update_filter/2`,
      `settings/1`, `clear_settings/1` and `stats/1` with the id of a worker
      on another node run on that node and return its answer; the pool form
      (`{:pool, name}`) applies on every connected node;
    * `GrpcStream.list_streams(scope: :cluster)` gathers every node's
      streams (each row says its `:node`) and names the nodes that did not
      answer;
    * registering a worker id that another node streams already is
      `{:error, {:already_registered, {:node, node}}}`.

  A node that does not answer within #{5_000} ms (or is gone) gives
  `{:error, {:nodedown, node}}` (or `{:error, {:timeout, node}}`), never a
  hang. When a node goes down, `:pg` drops its members, so its workers
  leave the cluster views. Settings made for a worker or a pool are copied
  to every node (`Snakepit.Telemetry.Settings`), so a node that restarts
  gets them back as it reconnects and its workers start with them.
  """

  @scope __MODULE__
  @timeout 5_000

  @doc false
  def child_spec(_), do: %{id: __MODULE__, start: {:pg, :start_link, [@scope]}}

  # Every node's GrpcStream is in this group: the nodes that run the library.
  @streams :grpc_streams

  @doc false
  def join_streams, do: safe(fn -> :pg.join(@scope, @streams, self()) end)

  @doc "The other nodes that run the library (their GrpcStream is in the group)."
  def nodes, do: other_nodes(@streams)

  @doc "The scope of the cluster's `:pg` groups."
  def scope, do: @scope

  @doc "How long a call to another node may take (ms)."
  def timeout, do: @timeout

  @doc false
  # A worker's groups: its id, and its pool (joined once per worker).
  def join(worker_id, pool) do
    safe(fn -> :pg.join(@scope, {:worker, worker_id}, self()) end)
    if pool, do: safe(fn -> :pg.join(@scope, {:pool, pool}, self()) end)
    :ok
  end

  @doc false
  def leave(worker_id, pool) do
    safe(fn -> :pg.leave(@scope, {:worker, worker_id}, self()) end)
    if pool, do: safe(fn -> :pg.leave(@scope, {:pool, pool}, self()) end)
    :ok
  end

  @doc "The other nodes with workers of `pool`."
  def pool_nodes(pool), do: other_nodes({:pool, pool})

  # The nodes, other than this one, of a group's members.
  defp other_nodes(group) do
    @scope
    |> :pg.get_members(group)
    |> Enum.map(&node/1)
    |> Enum.reject(&(&1 == node()))
    |> Enum.uniq()
  rescue
    ArgumentError -> []
  end

  # Without the scope (GrpcStream started alone, in a test), nothing is shared.
  defp safe(fun) do
    fun.()
  rescue
    ArgumentError -> :ok
  end

  @doc "The node that streams `worker_id`, other than this one, or nil."
  @spec owner(String.t()) :: node | nil
  def owner(worker_id) do
    found =
      @scope
      |> :pg.get_members({:worker, worker_id})
      |> Enum.find_value(fn pid -> if node(pid) != node(), do: node(pid) end)

    if found, do: __MODULE__.Directory.seen(worker_id, found)
    found
  rescue
    ArgumentError -> nil
  end

  @doc """
  Runs `GrpcStream.fun(args)` on the node that streams `worker_id`;
  `{:error, :unknown_worker}` when no node does.
  """
  def forward(worker_id, fun, args) do
    case owner(worker_id) do
      nil -> gone(worker_id)
      node -> call(node, fun, args)
    end
  end

  # Streamed by a node that has gone: say so, rather than :unknown_worker.
  defp gone(worker_id) do
    case __MODULE__.Directory.last_node(worker_id) do
      nil ->
        {:error, :unknown_worker}

      node ->
        if node in Node.list(), do: {:error, :unknown_worker}, else: {:error, {:nodedown, node}}
    end
  end

  @doc "`GrpcStream.fun(args)` on `node`, with the cluster's timeout and errors."
  def call(node, fun, args) do
    :erpc.call(node, Snakepit.Telemetry.GrpcStream, fun, args, @timeout)
  catch
    :error, {:erpc, :noconnection} -> {:error, {:nodedown, node}}
    :error, {:erpc, :timeout} -> {:error, {:timeout, node}}
    :error, {:erpc, reason} -> {:error, {:erpc, node, reason}}
    :exit, reason -> {:error, {:exit, node, reason}}
  end

  @doc "`GrpcStream.fun(args)` on every other connected node: `{answers, unreachable nodes}`."
  def multicall(fun, args, nodes \\ nodes()) do
    results = :erpc.multicall(nodes, Snakepit.Telemetry.GrpcStream, fun, args, @timeout)

    Enum.zip(nodes, results)
    |> Enum.reduce({[], []}, fn
      {node, {:ok, answer}}, {ok, bad} -> {[{node, answer} | ok], bad}
      {node, _error}, {ok, bad} -> {ok, [node | bad]}
    end)
    |> then(fn {ok, bad} -> {Enum.reverse(ok), Enum.reverse(bad)} end)
  end
end
