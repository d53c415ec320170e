defmodule Snakepit.Robustness.ConnectionHealthTest do
  # Issue 11, classes 5 and 6. Before the fix (5) the NIF pinged an idle
  # stream every 10 s, which grpcio's default server policy (no pings more
  # often than every 5 minutes while no data flows, GOAWAY after 2 strikes)
  # answered with "too_many_pings": a reconnect every ~41 s on an idle real
  # worker. And (6) any opened stream reset the backoff, so a peer that
  # accepts every stream and ends it at once got 86 connects in 10 s.
  #
  # The ping policy is scaled down here (a server refusing pings more often
  # than every 3 s; the client pinging every 1 s or 4 s) so the test takes
  # seconds; the defaults keep the same order: the NIF pings every 330 s,
  # over grpcio's 300 s.
  use ExUnit.Case, async: false

  alias Snakepit.Telemetry.GrpcStream
  alias Snakepit.Test.{HostileWorker, PythonWorker}

  import Snakepit.Test.Eventually

  @tag timeout: 60_000
  test "keepalive honours the server's ping policy and still finds a stalled peer" do
    strict = HostileWorker.start!("idle", ["--min-ping-interval-ms", "3000"])
    ours = PythonWorker.start!()
    stalled = PythonWorker.start!()

    ids = for name <- ~w(violating complying ours stalled), into: %{}, do: {name, "ka_#{name}"}
    on_exit(fn -> Enum.each(Map.values(ids), &GrpcStream.unregister_worker/1) end)

    # A hostile peer checks no token: only our workers get one.
    register = fn name, worker, interval_ms ->
      {:ok, _} =
        GrpcStream.register_worker(worker.endpoint, %{worker_id: ids[name]},
          token: Map.get(worker, :token),
          keepalive_interval_ms: interval_ms,
          keepalive_timeout_ms: 1_000,
          backoff_initial_ms: 100,
          backoff_max_ms: 200
        )
    end

    register.("violating", strict, 1_000)
    register.("complying", strict, 4_000)
    # grpc_server.py accepts pings every second: a 1 s interval is fine there.
    register.("ours", ours, 1_000)
    register.("stalled", stalled, 1_000)

    eventually(fn -> Enum.all?(Map.values(ids), &(stats(&1).state == :open)) end)
    # Nothing flows on any stream from here on.
    System.cmd("kill", ["-STOP", "#{stalled.os_pid}"])
    stopped_at = System.monotonic_time(:millisecond)

    # A stalled peer: no ping answer within interval + timeout (2 s here).
    eventually(fn -> stats(ids["stalled"]).state != :open end, tries: 400)
    detected_ms = System.monotonic_time(:millisecond) - stopped_at
    assert detected_ms < 6_000, "stall found after #{detected_ms} ms"
    System.cmd("kill", ["-CONT", "#{stalled.os_pid}"])

    # The violating client is torn down by the server's policy...
    eventually(fn -> stats(ids["violating"]).reconnects >= 1 end, tries: 500)
    assert stats(ids["violating"]).last_error =~ ~r/ping|GOAWAY|Unavailable|keep/i

    # ...while the complying one and our worker's stay open, 12 s after.
    Process.sleep(max(0, 12_000 - (System.monotonic_time(:millisecond) - stopped_at)))

    for name <- ~w(complying ours) do
      s = stats(ids[name])
      assert {s.state, s.connects, s.reconnects} == {:open, 1, 0}, "#{name}: #{inspect(s)}"
    end

    eventually(fn -> stats(ids["stalled"]).state == :open end, tries: 500)
  end

  @tag timeout: 30_000
  test "a peer that ends every stream at once gets exponential backoff" do
    peer = HostileWorker.start!("flap")
    id = "flap#{System.unique_integer([:positive])}"
    on_exit(fn -> GrpcStream.unregister_worker(id) end)

    {:ok, _} =
      GrpcStream.register_worker(peer.endpoint, %{worker_id: id},
        backoff_initial_ms: 50,
        backoff_max_ms: 5_000
      )

    Process.sleep(4_000)
    # 50 + 100 + 200 + 400 + 800 + 1600 ms (+ jitter up to a quarter) of
    # backoff fit in 4 s: at most 7 connects (before the fix: one every 50 ms).
    s = stats(id)
    assert s.connects >= 3 and s.connects <= 7, inspect(s)
  end

  defp stats(id) do
    {:ok, s} = GrpcStream.stats(id)
    s
  end
end
