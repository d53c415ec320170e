defmodule Snakepit.Test.ClusterPeers do
  @moduledoc false
  # The cluster test's peers (Snakepit.Test.Peer) with a counting handler
  # that lives on each peer.

  @cookie :snakepit_cluster_test

  def start_primary!, do: Snakepit.Test.Peer.start_primary(@cookie)

  @doc "Starts a peer with a pool `pool` of one real Python worker and the probe."
  def start_peer!(name, pool) do
    {peer, node} = Snakepit.Test.Peer.start(name, pool, cookie: @cookie)
    :ok = :erpc.call(node, __MODULE__, :attach_probe, [])
    {peer, node}
  end

  @doc false
  # A counter of tool.result_size events, on the node it runs on.
  def attach_probe do
    counts = :counters.new(1, [])
    :persistent_term.put({__MODULE__, :counts}, counts)

    :telemetry.attach(
      "cluster-probe",
      [:snakepit, :python, :tool, :result_size],
      &__MODULE__.count/4,
      counts
    )
  end

  @doc false
  def count(_event, _m, _md, counts), do: :counters.add(counts, 1, 1)

  @doc "The probe's count on `node`."
  def probe_count(node), do: :erpc.call(node, __MODULE__, :local_count, [])

  @doc false
  def local_count, do: :counters.get(:persistent_term.get({__MODULE__, :counts}), 1)

  @doc "Has the pool on `node` emit `n` tool.result_size events."
  def emit(node, pool, n) do
    :erpc.call(node, Snakepit.Pool, :execute, [
      pool,
      "emit_events",
      %{event: "tool.result_size", count: n}
    ])
  end
end
