defmodule MyApp.ResultSizeMetrics do
  # A user's own handler, as an application would write it: sums result
  # sizes per tool in an ETS table.
  def attach(table) do
    :telemetry.attach(
      "my-app-result-sizes",
      [:snakepit, :python, :tool, :result_size],
      &__MODULE__.handle/4,
      table
    )
  end

  def handle(_event, %{bytes: bytes}, %{tool: tool}, table),
    do: :ets.update_counter(table, tool, bytes, {tool, 0})

  def handle(_event, _measurements, _metadata, _table), do: :ok
end

defmodule Snakepit.TestHelpersTest do
  # The helpers an application's tests use: the fake worker (no Python),
  # the forwarder and the default logger.
  use ExUnit.Case, async: false

  alias Snakepit.Telemetry.{DefaultLogger, GrpcStream}
  alias Snakepit.Test.{FakeWorker, Telemetry}

  import Snakepit.Test.Eventually

  @result_size [:snakepit, :python, :tool, :result_size]

  test "a user's handler tested against the fake worker, without Python" do
    table = :ets.new(:sizes, [:public])
    MyApp.ResultSizeMetrics.attach(table)
    on_exit(fn -> :telemetry.detach("my-app-result-sizes") end)

    {:ok, fake} = FakeWorker.start(worker_id: "fake-user-1")
    on_exit(fn -> FakeWorker.stop(fake) end)

    for bytes <- [10, 20, 12],
        do: :ok = FakeWorker.emit(fake, "tool.result_size", %{bytes: bytes}, %{tool: "predict"})

    :ok = FakeWorker.emit(fake, "tool.result_size", %{bytes: 5}, %{tool: :other})
    eventually(fn -> :ets.lookup(table, "predict") == [{"predict", 42}] end)
    eventually(fn -> :ets.lookup(table, "other") == [{"other", 5}] end)
  end

  test "the fake worker honours controls, reports totals and can be killed" do
    ref =
      Telemetry.forward([@result_size, [:snakepit, :grpc, :connection, :lost]],
        only: %{worker_id: "fake-2"}
      )

    on_exit(fn -> Telemetry.detach(ref) end)
    {:ok, fake} = FakeWorker.start(worker_id: "fake-2", pool_name: :fakes)
    on_exit(fn -> FakeWorker.stop(fake) end)

    :ok =
      FakeWorker.emit(fake, "tool.result_size", %{bytes: 1}, %{tool: "a"}, correlation_id: "c-1")

    assert_receive {:telemetry, @result_size, %{bytes: 1},
                    %{tool: "a", correlation_id: "c-1", pool_name: :fakes}},
                   5_000

    :ok = GrpcStream.update_filter("fake-2", deny: ["tool.*"])
    # Once the filter is in force at the worker, its tool events stop there.
    eventually(fn ->
      :ok = FakeWorker.emit(fake, "tool.result_size", %{bytes: 2}, %{tool: "b"})
      FakeWorker.state(fake).filtered_out > 0
    end)

    eventually(fn -> FakeWorker.state(fake).queued == 0 end)
    filtered = FakeWorker.state(fake).filtered_out
    :ok = FakeWorker.emit(fake, "tool.result_size", %{bytes: 99}, %{tool: "b"})
    eventually(fn -> FakeWorker.state(fake).filtered_out == filtered + 1 end)
    refute_receive {:telemetry, @result_size, %{bytes: 99}, _}, 200

    :ok = GrpcStream.toggle("fake-2", false)
    eventually(fn -> FakeWorker.state(fake).enabled == false end)
    :ok = FakeWorker.emit(fake, "tool.result_size", %{bytes: 3}, %{})
    eventually(fn -> FakeWorker.state(fake).disabled == 1 end)

    # Its running totals reach the stream's accounting.
    eventually(fn ->
      st = FakeWorker.state(fake)
      {:ok, s} = GrpcStream.stats("fake-2")

      {s.python_emitted, s.python_filtered_out, s.python_disabled} ==
        {st.emitted, st.filtered_out, st.disabled}
    end)

    :ok = FakeWorker.kill(fake)

    assert_receive {:telemetry, [:snakepit, :grpc, :connection, :lost], _,
                    %{worker_id: "fake-2"}},
                   5_000

    assert {:error, :killed} = FakeWorker.emit(fake, "tool.result_size", %{bytes: 4})
    assert FakeWorker.state(fake).killed
  end

  test "bad arguments are errors" do
    {:ok, fake} = FakeWorker.start(register: false)
    on_exit(fn -> FakeWorker.kill(fake) end)

    assert {:error, {:invalid_measurements, _}} =
             FakeWorker.emit(fake, "a.b", %{x: "not a number"})

    assert {:error, {:invalid_metadata, _}} = FakeWorker.emit(fake, "a.b", %{}, %{{:k} => 1})

    assert {:error, {:invalid_option, {:correlation_id, 5}}} =
             FakeWorker.emit(fake, "a.b", %{}, %{}, correlation_id: 5)

    assert {:error, {:invalid_options, :x}} = FakeWorker.start(:x)
  end

  test "the default logger logs each event as one line, at its level, for the events chosen" do
    :ok = DefaultLogger.attach(level: :warning, events: [@result_size])
    on_exit(fn -> DefaultLogger.detach() end)
    assert {:error, :already_exists} = DefaultLogger.attach()
    assert {:error, {:unknown_event, [:nope]}} = DefaultLogger.attach(events: [[:nope]])
    assert {:error, {:invalid_level, :loud}} = DefaultLogger.attach(level: :loud)

    log =
      ExUnit.CaptureLog.capture_log([level: :warning], fn ->
        :telemetry.execute(@result_size, %{bytes: 7}, %{tool: "t", worker_id: "w"})
        :telemetry.execute([:snakepit, :python, :call, :stop], %{duration: 1}, %{})
      end)

    assert log =~ "[warning] snakepit.python.tool.result_size tool=t worker_id=w bytes=7"
    refute log =~ "python.call.stop"
  end
end
