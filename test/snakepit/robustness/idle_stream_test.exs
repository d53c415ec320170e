defmodule Snakepit.Robustness.IdleStreamTest do
  # Issue 11, class 5, at real settings: an idle stream with the default
  # keepalive against a grpcio server with its default ping policy, and a
  # GRPCWorker's stream (10 s pings) against our worker, both for 50 s.
  # Before the fix the NIF pinged every 10 s and grpcio answered the third
  # ping without data with GOAWAY "too_many_pings" (a reconnect every ~41 s).
  # Async: it only waits, on worker ids of its own.
  use ExUnit.Case, async: true

  alias Snakepit.Telemetry.GrpcStream
  alias Snakepit.Test.HostileWorker

  @idle_ms 50_000

  @tag timeout: 90_000
  test "idle streams stay open at default settings (grpcio default policy, our worker)" do
    peer = HostileWorker.start!("idle")
    id = "idle_default#{System.unique_integer([:positive])}"
    on_exit(fn -> GrpcStream.unregister_worker(id) end)
    {:ok, _} = GrpcStream.register_worker(peer.endpoint, %{worker_id: id})

    worker_id = "idle_worker#{System.unique_integer([:positive])}"

    start_supervised!({Snakepit.GRPCWorker, id: worker_id, args: ["--sample-interval-ms", "0"]})

    Process.sleep(@idle_ms)

    for id <- [id, worker_id] do
      {:ok, s} = GrpcStream.stats(id)
      assert {s.state, s.connects, s.reconnects} == {:open, 1, 0}, "#{id}: #{inspect(s)}"
    end
  end
end
