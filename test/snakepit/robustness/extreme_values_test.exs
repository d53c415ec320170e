defmodule Snakepit.Robustness.ExtremeValuesTest do
  # Issue 11, class 1: numbers at the edges of what a term can hold. Before
  # the fix a duration of 1.0e300 became infinity in native units, and the
  # NIF handed the BEAM a map built from a failed enif_make_double: a
  # segfault with a handler attached, ArgumentError on the stderr path.
  use ExUnit.Case, async: false

  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.{GrpcStream, Naming, Native, PythonCapture}
  alias Snakepit.Test.{HostileWorker, PythonWorker}

  import Snakepit.Test.Eventually

  @call_stop [:snakepit, :python, :call, :stop]

  setup do
    ref = :telemetry_test.attach_event_handlers(self(), Naming.python_events())
    on_exit(fn -> :telemetry.detach(ref) end)
    id = "extreme#{System.unique_integer([:positive])}"
    on_exit(fn -> GrpcStream.unregister_worker(id) end)
    {:ok, id: id}
  end

  test "a real worker's 1.0e300 duration reaches the handler, and the stream goes on", %{id: id} do
    w = PythonWorker.start!()
    {:ok, _} = GrpcStream.register_worker(w.endpoint, %{worker_id: id}, token: w.token)
    {:ok, channel} = Client.connect(w.endpoint, token: w.token)

    for duration <- [1.0e300, -1.0e300, 1.7976931348623157e308, 7] do
      {:ok, _} =
        Client.execute_tool(channel, "emit_events", %{
          event: "python.call.stop",
          measurements: %{duration: duration},
          metadata: %{command: "extreme"}
        })
    end

    for expected <- [1.0e300, -1.0e300, 1.7976931348623157e308, 7] do
      assert_receive {@call_stop, _, %{duration: d}, %{worker_id: ^id, command: "extreme"}},
                     10_000

      assert d == expected
    end
  end

  test "a hostile peer's extreme numbers and totals: every term well-formed, stream alive",
       %{id: id} do
    peer = HostileWorker.start!("extreme", ["--interval-ms", "20"])
    {:ok, _} = GrpcStream.register_worker(peer.endpoint, %{worker_id: id})

    # Each round: 18 extreme events, then 10 good ones.
    eventually(fn -> elem(GrpcStream.stats(id), 1).events_delivered >= 280 end)

    for _ <- 1..50 do
      assert_receive {event, _ref, measurements, metadata}, 5_000
      assert event in Naming.python_events()
      assert Enum.all?(Map.values(measurements), &(is_integer(&1) or is_float(&1)))
      assert is_binary(metadata.worker_id)
    end

    {:ok, s} = GrpcStream.stats(id)
    assert s.state == :open and s.reconnects == 0
    # Hostile running totals (2^64 - 1, alternating sources) never wrap.
    assert Enum.all?(Map.values(s.accounting.dropped), &(&1 >= 0 and &1 < 2 ** 64))
  end

  test "stderr path: extreme numbers are events or counted rejections, never a raise" do
    lines =
      for v <- ~w(1e300 -1e300 1.7976931348623157e308 5e-324 9223372036854775807
                  -9223372036854775808 18446744073709551615 1e400 "1e300"),
          key <- ~w(duration bytes) do
        ~s(TELEMETRY:{"event":"python.call.stop","measurements":{"#{key}":#{v}}})
      end

    for line <- lines do
      case Native.stderr_parse_line(line) do
        {:ok, @call_stop, measurements, _} ->
          assert Enum.all?(Map.values(measurements), &(is_integer(&1) or is_float(&1)))

        {:error, {reason, message}} ->
          assert is_atom(reason) and is_binary(message)
      end

      assert PythonCapture.handle_line(line, %{worker_id: "stderr"}) in [
               :event,
               {:malformed, :invalid_json},
               {:malformed, :measurement_out_of_range}
             ]
    end
  end
end
