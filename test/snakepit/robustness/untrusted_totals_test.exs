defmodule Snakepit.Robustness.UntrustedTotalsTest do
  # Issue 11, class 10: the running totals a worker reports are its word.
  # Before the fix the stock RPC (which carries no totals) gave
  # `unaccounted: -delivered`, and hostile totals (2^64 - 1, alternating
  # source ids) wrapped the sums (18446744073709551577).
  use ExUnit.Case, async: false

  alias Snakepit.Telemetry.GrpcStream
  alias Snakepit.Test.{HostileWorker, LoadGen}

  import Snakepit.Test.Eventually

  @max_total 2 ** 53

  setup do
    id = "totals#{System.unique_integer([:positive])}"
    on_exit(fn -> GrpcStream.unregister_worker(id) end)
    {:ok, id: id}
  end

  test "the stock RPC reports no totals: emitted and unaccounted are :unknown", %{id: id} do
    lg = LoadGen.start!(["--rate", "2000", "--stock-only"])
    {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id})

    s =
      eventually(fn ->
        match?({:ok, %{events_delivered: n}} when n > 100, GrpcStream.stats(id)) &&
          elem(GrpcStream.stats(id), 1)
      end)

    assert s.rpc == "StreamTelemetry" and s.python_totals == false
    assert %{emitted: :unknown, unaccounted: :unknown, delivered: d} = s.accounting
    assert d > 100
  end

  test "hostile totals are clamped and never wrap; the stream goes on", %{id: id} do
    peer = HostileWorker.start!("extreme", ["--interval-ms", "10"])
    {:ok, _} = GrpcStream.register_worker(peer.endpoint, %{worker_id: id})
    # Source ids alternate every frame: 100 frames, 100 sources closed.
    eventually(fn -> elem(GrpcStream.stats(id), 1).frames >= 200 end)
    {:ok, s} = GrpcStream.stats(id)

    assert s.python_totals
    a = s.accounting
    values = [a.emitted, a.unaccounted | Map.values(a.dropped)]
    assert Enum.all?(values, &(is_integer(&1) and &1 >= 0 and &1 <= @max_total)), inspect(a)
    assert is_boolean(a.consistent)
    assert s.state == :open and s.reconnects == 0
  end
end
