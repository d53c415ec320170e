defmodule Snakepit.Telemetry.SettingsReplayTest do
  # Issue 12, item 3: a stream sends the complete settings when it opens,
  # not only what Elixir changed. Before the fix a worker kept whatever an
  # earlier stream had set (an intruder's `deny ["*"]`, another worker id's
  # sampling 0.0): the next registration received nothing, and its
  # accounting looked clean (everything filtered_out).
  use ExUnit.Case, async: false

  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.GrpcStream
  alias Snakepit.Test.PythonWorker

  import Snakepit.Test.Eventually

  @result_size [:snakepit, :python, :tool, :result_size]

  test "settings left in a worker by an earlier stream do not survive the next one" do
    ref = :telemetry_test.attach_event_handlers(self(), [@result_size])
    on_exit(fn -> :telemetry.detach(ref) end)
    w = PythonWorker.start!()
    {:ok, channel} = Client.connect(w.endpoint, token: w.token)
    state = fn -> elem(Client.execute_tool(channel, "telemetry_state", %{}), 1) end
    on_exit(fn -> Enum.each(["left", "next"], &GrpcStream.unregister_worker/1) end)

    {:ok, _} = GrpcStream.register_worker(w.endpoint, %{worker_id: "left"}, token: w.token)
    eventually(fn -> state.()["active_streams"] == 1 end)
    :ok = GrpcStream.update_filter("left", deny: ["*"])
    :ok = GrpcStream.update_sampling("left", 0.0)
    :ok = GrpcStream.toggle("left", false)
    eventually(fn -> state.()["deny"] == ["*"] and state.()["enabled"] == false end)
    :ok = GrpcStream.unregister_worker("left")

    {:ok, _} = GrpcStream.register_worker(w.endpoint, %{worker_id: "next"}, token: w.token)

    s =
      eventually(fn ->
        s = state.()
        s["active_streams"] == 1 and s["deny"] == [] and s["enabled"] and s
      end)

    assert s["sampling_rate"] == 1.0 and s["allow"] == [] and s["sampling_patterns"] == []

    {:ok, _} =
      Client.execute_tool(channel, "emit_events", %{count: 3, measurements: %{bytes: 717_171}})

    for _ <- 1..3 do
      assert_receive {@result_size, _, %{bytes: 717_171}, %{worker_id: "next"}}, 5_000
    end
  end
end
