# Two more BEAM nodes on this machine, each with a pool of a real Python
# worker; this node lists, tunes and inspects them (Snakepit.Telemetry.Cluster).
#   make demo-cluster     (mix run examples/cluster_demo.exs)
alias Snakepit.Telemetry.GrpcStream

defmodule ClusterDemo do
  def heading(text), do: IO.puts("\n#{IO.ANSI.bright()}== #{text}#{IO.ANSI.reset()}")

  # Events handled by a handler on `node`, forwarded here to print.
  def attach_on(node, events) do
    :erpc.call(node, Snakepit.Test.Telemetry, :forward, [events, [to: self()]])
  end

  def emit(node, pool, n),
    do:
      {:ok, _} =
        :erpc.call(node, Snakepit.Pool, :execute, [
          pool,
          "emit_events",
          %{event: "tool.result_size", count: n}
        ])

  def received(wait \\ 500) do
    receive do
      {:telemetry, event, m, md} -> [{event, m, md} | received(wait)]
    after
      wait -> []
    end
  end
end

Snakepit.Test.Peer.start_primary(:snakepit_demo, :demo_primary)
ClusterDemo.heading("starting two nodes with a Python worker each")
{peer_a, _node_a} = Snakepit.Test.Peer.start(:demo_a, :pool_a)
{peer_b, node_b} = Snakepit.Test.Peer.start(:demo_b, :pool_b)
IO.puts("this node: #{node()}; others: #{inspect(Node.list())}")
Process.sleep(500)

ClusterDemo.heading("GrpcStream.list_streams(scope: :cluster)")
view = GrpcStream.list_streams(scope: :cluster)
for r <- view.streams, do: IO.puts("  #{r.worker_id} on #{r.node}: #{r.state}, #{r.rpc}")
IO.puts("  unreachable: #{inspect(view.unreachable)}")

ClusterDemo.heading("events of pool_b_1, handled on #{node_b}")
ClusterDemo.attach_on(node_b, [[:snakepit, :python, :tool, :result_size]])
ClusterDemo.emit(node_b, :pool_b, 3)

for {event, m, md} <- ClusterDemo.received(),
    do: IO.puts("  #{inspect(event)} #{inspect(m)} node=#{md.node} worker=#{md.worker_id}")

ClusterDemo.heading("from #{node()}: update_filter(\"pool_b_1\", deny: [\"tool.result_size\"])")

{us, answer} =
  :timer.tc(fn -> GrpcStream.update_filter("pool_b_1", deny: ["tool.result_size"]) end)

IO.puts(
  "  -> #{inspect(answer)} in #{us} us; settings: #{inspect(elem(GrpcStream.settings("pool_b_1"), 1).filter)}"
)

ClusterDemo.emit(node_b, :pool_b, 3)

IO.puts(
  "  events handled on #{node_b} now: #{length(ClusterDemo.received())} (filtered in the worker)"
)

{:ok, stats} = GrpcStream.stats("pool_b_1")

IO.puts(
  "  stats from #{stats.node}: python_emitted #{stats.python_emitted}, python_filtered_out #{stats.python_filtered_out}"
)

:ok = GrpcStream.update_filter("pool_b_1", deny: [])
ClusterDemo.emit(node_b, :pool_b, 2)
IO.puts("  filter cleared: #{length(ClusterDemo.received())} events handled on #{node_b}")

ClusterDemo.heading("#{node_b} stops")
:peer.stop(peer_b)
{us, answer} = :timer.tc(fn -> GrpcStream.toggle("pool_b_1", false) end)
IO.puts("  toggle(\"pool_b_1\", false) -> #{inspect(answer)} in #{us} us")
view = GrpcStream.list_streams(scope: :cluster)
IO.puts("  cluster view: #{inspect(Enum.map(view.streams, &{&1.worker_id, &1.node}))}")

:peer.stop(peer_a)
IO.puts("\ndone")
