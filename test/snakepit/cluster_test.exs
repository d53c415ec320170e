defmodule Snakepit.ClusterTest do
  # Three peer nodes on loopback (OTP's :peer), each with a pool of a real
  # Python worker; this node controls and inspects them all.
  use ExUnit.Case, async: false

  alias Snakepit.Telemetry.GrpcStream
  alias Snakepit.Test.{ClusterPeers, FakeWorker}

  import Snakepit.Test.Eventually

  @moduletag timeout: 300_000

  setup_all do
    ClusterPeers.start_primary!()
    on_exit(fn -> Node.stop() end)
    :ok
  end

  defp median(samples), do: samples |> Enum.sort() |> Enum.at(div(length(samples), 2))

  defp time_us(fun), do: elem(:timer.tc(fun), 0)

  # The peer may be gone already (stopped by the test, or with the test
  # process it is linked to) or still up: either is fine. (`catch_exit/1`
  # asserts an exit, and failed a run where the peer was still up.)
  defp stop_peer(peer) do
    :peer.stop(peer)
  catch
    :exit, _ -> :ok
  end

  test "control and inspect workers on other nodes; a node that goes is named" do
    peers =
      for n <- 1..3,
          do:
            ClusterPeers.start_peer!(:"peer#{n}_#{System.unique_integer([:positive])}", :"cp#{n}")

    [{_, n1}, {_, n2}, {peer3, n3}] = peers
    on_exit(fn -> for {p, _} <- peers, do: stop_peer(p) end)

    # Every worker, with its node.
    view =
      eventually(fn ->
        v = GrpcStream.list_streams(scope: :cluster)
        Enum.count(v.streams, &(&1.state == :open)) >= 3 && v
      end)

    assert view.unreachable == []

    assert Enum.map(view.streams, &{&1.worker_id, &1.node}) --
             [{"cp1_1", n1}, {"cp2_1", n2}, {"cp3_1", n3}] == []

    assert {:ok, %{node: ^n1, state: :open}} = GrpcStream.stats("cp1_1")

    # A filter set from here silences the event on its own node's handler.
    # (Each check waits until the worker itself has the setting, and counts
    # from a settled probe: events still in flight would blur it.)
    :ok = GrpcStream.update_filter("cp2_1", deny: ["tool.result_size"])

    assert {:ok, %{filter: %{deny: ["tool.result_size"], from: :worker}}} =
             GrpcStream.settings("cp2_1")

    applied(n2, :cp2, &(&1["deny"] == ["tool.result_size"]))
    before = settled(n2)
    {:ok, _} = ClusterPeers.emit(n2, :cp2, 50)
    assert settled(n2) == before

    :ok = GrpcStream.update_filter("cp2_1", deny: [])
    applied(n2, :cp2, &(&1["deny"] == []))
    {:ok, _} = ClusterPeers.emit(n2, :cp2, 50)
    eventually(fn -> ClusterPeers.probe_count(n2) >= before + 50 end)

    # Sampling at 0 and toggling off, from here, on n1's worker.
    :ok = GrpcStream.update_sampling("cp1_1", 0.0)
    applied(n1, :cp1, &(&1["sampling_rate"] == 0.0))
    base1 = settled(n1)
    {:ok, _} = ClusterPeers.emit(n1, :cp1, 50)
    :ok = GrpcStream.update_sampling("cp1_1", 1.0)
    :ok = GrpcStream.toggle("cp1_1", false)
    applied(n1, :cp1, &(&1["enabled"] == false and &1["sampling_rate"] == 1.0))
    {:ok, _} = ClusterPeers.emit(n1, :cp1, 50)
    assert settled(n1) == base1
    :ok = GrpcStream.toggle("cp1_1", true)
    applied(n1, :cp1, &(&1["enabled"] == true))
    {:ok, _} = ClusterPeers.emit(n1, :cp1, 20)
    eventually(fn -> ClusterPeers.probe_count(n1) >= base1 + 20 end)

    # The pool form, from here, reaches the pool's node. (The worker's own
    # settings go first: they would override the pool's.)
    assert [n1] == Snakepit.Telemetry.Cluster.pool_nodes(:cp1)
    :ok = GrpcStream.clear_settings("cp1_1")
    :ok = GrpcStream.toggle({:pool, :cp1}, false)

    eventually(fn ->
      match?({:ok, %{enabled: %{value: false, from: :pool}}}, GrpcStream.settings("cp1_1"))
    end)

    applied(n1, :cp1, &(&1["enabled"] == false))
    base2 = settled(n1)
    {:ok, _} = ClusterPeers.emit(n1, :cp1, 20)
    assert settled(n1) == base2
    :ok = GrpcStream.clear_settings({:pool, :cp1})
    applied(n1, :cp1, &(&1["enabled"] == true))
    {:ok, _} = ClusterPeers.emit(n1, :cp1, 20)
    eventually(fn -> ClusterPeers.probe_count(n1) >= base2 + 20 end)

    # The same id cannot stream from two nodes.
    assert {:error, {:already_registered, {:node, ^n1}}} =
             GrpcStream.register_worker("127.0.0.1:1", %{worker_id: "cp1_1"})

    # A remote control call next to a local one (a fake worker on this node).
    {:ok, fake} = FakeWorker.start(worker_id: "cluster-local")
    on_exit(fn -> FakeWorker.stop(fake) end)

    local =
      median(
        for _ <- 1..50, do: time_us(fn -> :ok = GrpcStream.toggle("cluster-local", true) end)
      )

    remote = median(for _ <- 1..50, do: time_us(fn -> :ok = GrpcStream.toggle("cp2_1", true) end))
    IO.puts("\nCLUSTER control call median: local #{local} us, remote #{remote} us")

    # Settings made here for n3's worker; then n3 goes.
    :ok = GrpcStream.update_filter("cp3_1", deny: ["python.gc.*"])
    Process.sleep(1_200)
    :ok = :peer.stop(peer3)
    {elapsed, answer} = :timer.tc(fn -> GrpcStream.toggle("cp3_1", false) end)
    assert answer == {:error, {:nodedown, n3}}
    assert elapsed < 1_000_000

    view = GrpcStream.list_streams(scope: :cluster)
    refute Enum.any?(view.streams, &(&1.node == n3))
    assert view.unreachable == []

    # n3 comes back (same name, same pool): its worker starts with the filter.
    {peer3b, ^n3} = ClusterPeers.start_peer!(peer_name(n3), :cp3)
    on_exit(fn -> stop_peer(peer3b) end)

    state =
      eventually(
        fn ->
          case :erpc.call(n3, Snakepit.Pool, :execute, [:cp3, "telemetry_state", %{}]) do
            {:ok, %{"deny" => ["python.gc.*"]} = s} -> s
            _ -> false
          end
        end,
        tries: 200,
        interval: 50
      )

    assert state["deny"] == ["python.gc.*"]

    assert {:ok, %{filter: %{deny: ["python.gc.*"], from: :worker}}} =
             GrpcStream.settings("cp3_1")
  end

  # Waits until the worker of `pool` on `node` reports settings that satisfy `fun`.
  defp applied(node, pool, fun) do
    eventually(
      fn ->
        case :erpc.call(node, Snakepit.Pool, :execute, [pool, "telemetry_state", %{}]) do
          {:ok, state} -> fun.(state)
          _ -> false
        end
      end,
      tries: 200,
      interval: 25
    )
  end

  # The probe's count on `node` once nothing more arrives for 300 ms.
  defp settled(node) do
    count = ClusterPeers.probe_count(node)
    Process.sleep(300)
    if ClusterPeers.probe_count(node) == count, do: count, else: settled(node)
  end

  defp peer_name(node),
    do: node |> Atom.to_string() |> String.split("@") |> hd() |> String.to_atom()
end
