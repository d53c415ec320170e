defmodule Snakepit.WorkerToolsTest do
  # Issue 12, item 4: the demo and test tools load only when asked, so a
  # production worker exposes its user's tools and ping, never a tool that
  # emits ten million events on request.
  use ExUnit.Case, async: false

  alias Snakepit.GRPCWorker

  test "a worker started without :demo_tools has ping and none of the demo tools" do
    worker =
      start_supervised!(
        {GRPCWorker, id: "no_demo", demo_tools: false, args: ["--sample-interval-ms", "0"]}
      )

    assert {:ok, %{"pong" => true}} = GRPCWorker.execute(worker, "ping", %{})

    for tool <- ~w(emit_events fail telemetry_demo telemetry_state emit_random) do
      assert {:error, {:tool_error, message}} = GRPCWorker.execute(worker, tool, %{})
      assert message =~ "unknown tool"
    end
  end
end
