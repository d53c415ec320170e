defmodule Snakepit.Telemetry.LastingSettingsTest do
  # Controls that last and apply to a whole pool, against real Python
  # workers: what each worker reports it has in force (the demo tool
  # telemetry_state) is the truth.
  use ExUnit.Case, async: false

  alias Snakepit.{GRPCWorker, Pool}
  alias Snakepit.Telemetry.GrpcStream

  import Snakepit.Test.Eventually

  @moduletag timeout: 120_000

  defp start_pool(name, opts \\ []) do
    opts = [name: name, size: 1, demo_tools: true, status_interval: nil] ++ opts
    {:ok, _} = Pool.start_link(opts)
    on_exit(fn -> Pool.stop(name) end)
    "#{name}_1"
  end

  defp worker(pool) do
    eventually(fn ->
      case Pool.workers(pool) do
        [w] -> match?({:ok, _}, GRPCWorker.info(w)) && w
        _ -> false
      end
    end)
  end

  # The worker's own view of its settings, once it matches.
  defp worker_state(pool, fun) do
    eventually(
      fn ->
        with w when is_pid(w) <- worker(pool),
             {:ok, state} <- GRPCWorker.execute(w, "telemetry_state", %{}) do
          fun.(state) && state
        else
          _ -> false
        end
      end,
      tries: 200,
      interval: 50,
      message: fn _ -> "the worker of #{pool} never reached the expected settings" end
    )
  end

  test "a pool's filter outlasts a brutal worker kill and a GrpcStream restart" do
    id = start_pool(:lasting, telemetry: [sampling: {0.5, ["python.gc.*"]}])

    :ok = GrpcStream.update_filter({:pool, :lasting}, deny: ["snakepit.python.tool.result_size"])
    worker_state(:lasting, &(&1["deny"] == ["tool.result_size"]))

    assert {:ok, %{filter: filter, sampling: sampling, enabled: enabled}} =
             GrpcStream.settings(id)

    assert filter == %{allow: [], deny: ["tool.result_size"], from: :pool}
    assert sampling == %{rate: 0.5, patterns: ["python.gc.*"], from: :pool_initial}
    assert enabled == %{value: true, from: :default}

    # The Python process dies (SIGKILL); the worker restarts under its id.
    {:ok, %{python_pid: old_pid}} = GRPCWorker.info(worker(:lasting))
    System.cmd("kill", ["-KILL", "#{old_pid}"])

    state =
      worker_state(:lasting, fn s ->
        {:ok, %{python_pid: pid}} = GRPCWorker.info(worker(:lasting))
        pid != old_pid and s["deny"] == ["tool.result_size"]
      end)

    assert state["sampling_rate"] == 0.5
    opened = state["streams_opened"]

    # GrpcStream restarts: the new streams open with the settings again (a
    # stream opens with the full settings, so a lost filter would be cleared).
    old = Process.whereis(GrpcStream)
    Process.exit(old, :kill)
    eventually(fn -> Process.whereis(GrpcStream) not in [nil, old] end)

    eventually(fn ->
      match?({:ok, %{state: :open, connects: n}} when n >= 1, GrpcStream.stats(id))
    end)

    worker_state(
      :lasting,
      &(&1["deny"] == ["tool.result_size"] and &1["streams_opened"] > opened)
    )

    assert {:ok, %{filter: %{from: :pool}}} = GrpcStream.settings(id)
  end

  test "a worker's own setting overrides its pool's until cleared" do
    id = start_pool(:override)
    :ok = GrpcStream.toggle({:pool, :override}, false)
    worker_state(:override, &(&1["enabled"] == false))

    :ok = GrpcStream.toggle(id, true)
    worker_state(:override, &(&1["enabled"] == true))
    assert {:ok, %{enabled: %{value: true, from: :worker}}} = GrpcStream.settings(id)

    # A pool change does not touch the worker's own setting.
    :ok = GrpcStream.toggle({:pool, :override}, false)
    assert {:ok, %{enabled: %{value: true, from: :worker}}} = GrpcStream.settings(id)

    :ok = GrpcStream.clear_settings(id)
    worker_state(:override, &(&1["enabled"] == false))
    assert {:ok, %{enabled: %{value: false, from: :pool}}} = GrpcStream.settings(id)

    :ok = GrpcStream.clear_settings({:pool, :override})
    worker_state(:override, &(&1["enabled"] == true))
    assert {:ok, %{enabled: %{from: :default}}} = GrpcStream.settings(id)
  end

  test "a pool's settings made before it starts are in force from its workers' first stream" do
    :ok = GrpcStream.update_sampling({:pool, :later}, 0.25, ["snakepit.python.call.*"])
    on_exit(fn -> GrpcStream.clear_settings({:pool, :later}) end)

    assert {:ok, %{sampling: %{rate: 0.25, patterns: patterns, from: :pool}}} =
             GrpcStream.settings({:pool, :later})

    assert patterns == ["python.call.start", "python.call.stop", "python.call.exception"]
    start_pool(:later)
    state = worker_state(:later, &(&1["sampling_rate"] == 0.25))
    assert state["sampling_patterns"] == patterns
  end

  test "bad targets and options are refused, nothing is recorded" do
    assert {:error, {:invalid_pool, 5}} = GrpcStream.toggle({:pool, 5}, true)
    assert {:error, {:invalid_pool, nil}} = GrpcStream.settings({:pool, nil})
    assert {:error, :unknown_worker} = GrpcStream.settings("nobody")
    assert {:error, :unknown_worker} = GrpcStream.clear_settings("nobody")
    assert {:error, {:invalid_worker_id, :x}} = GrpcStream.toggle(:x, true)

    assert {:error, {:invalid_telemetry, {:sampling, {:invalid_rate, 2}}}} =
             Pool.start_link(name: :bad_tele, telemetry: [sampling: 2])

    assert {:error, {:invalid_telemetry, {:colour, _}}} =
             Pool.start_link(name: :bad_tele, telemetry: [colour: :red])

    assert {:error, {:invalid_telemetry, :nope}} =
             Pool.start_link(name: :bad_tele, telemetry: :nope)

    assert {:ok, %{sampling: %{from: :default}}} = GrpcStream.settings({:pool, :bad_tele})
  end
end
