defmodule Snakepit.Robustness.StderrIngestTest do
  # Issue 11, class 7 (the stderr path): output lines are parsed and
  # validated on a Rust thread, not on the scheduler of the process that
  # reads the port; the queue is bounded and every line is accounted for:
  # an event, a log line, a counted rejection or a counted drop.
  use ExUnit.Case, async: false

  alias Snakepit.Telemetry.{PythonCapture, StderrIngest}

  @call_start [:snakepit, :python, :call, :start]

  setup do
    ref = :telemetry_test.attach_event_handlers(self(), [@call_start])
    on_exit(fn -> :telemetry.detach(ref) end)
    :ok
  end

  test "lines come back as items in order, enriched, and the owner returns credit" do
    ingest = StderrIngest.start(%{worker_id: "ing", pool_name: :p})
    line = fn i -> ~s(TELEMETRY:{"event":"python.call.start","measurements":{"n":#{i}}}) end

    ExUnit.CaptureLog.capture_log(fn ->
      for i <- 1..2_000 do
        :ok = StderrIngest.push(ingest, line.(i))
        if rem(i, 100) == 0, do: :ok = StderrIngest.push(ingest, "plain log line #{i}")
      end

      :ok = StderrIngest.push(ingest, ~s(TELEMETRY:{"event":"python.bogus"}))
      assert StderrIngest.drain(ingest, 10_000) == :ok
    end)

    seen =
      for _ <- 1..2_000,
          do: assert_receive({@call_start, _, %{"n" => n}, %{worker_id: "ing"}}) && n

    assert seen == Enum.to_list(1..2_000)
    assert %{lines: 2_021, queue_full: 0, backlog_full: 0} = StderrIngest.stats(ingest)
  end

  test "a flood is bounded: dropped lines are counted, every line is accounted for" do
    before = PythonCapture.stats()
    ingest = StderrIngest.start(%{worker_id: "flood"})

    line =
      ~s(TELEMETRY:{"event":"python.call.start","metadata":{"x":"#{String.duplicate("y", 2000)}"}})

    # Pushed faster than parsed and never dispatched: queue and backlog fill.
    results = for _ <- 1..30_000, do: StderrIngest.push(ingest, line)
    queued = Enum.count(results, &(&1 == :ok))
    refused = Enum.count(results, &(&1 == {:error, :queue_full}))
    assert queued + refused == 30_000 and refused > 0
    assert StderrIngest.drain(ingest, 30_000) == :ok

    now = PythonCapture.stats()
    events = now.events - before.events
    backlog = now.backlog_full - before.backlog_full
    assert now.queue_full - before.queue_full == refused
    assert events + backlog == queued
    flush()
  end

  test "the ingest ends with its owner" do
    test = self()

    owner =
      spawn(fn ->
        send(test, {:ingest, StderrIngest.start(%{worker_id: "gone"})})
        receive do: (:exit -> :ok)
      end)

    assert_receive {:ingest, ingest}
    send(owner, :exit)
    Process.sleep(50)
    assert StderrIngest.push(ingest, "TELEMETRY:{}") == {:error, :closed}
  end

  test "forged batch messages are ignored item by item" do
    ingest = StderrIngest.start(%{worker_id: "forged"})
    assert :ignore = StderrIngest.handle_message({:snakepit_stderr_batch, -1, [], 0}, ingest)

    assert :ok =
             StderrIngest.handle_message(
               {:snakepit_stderr_batch, ingest.id, [:junk, {:event, 1, 2, 3}, {:log, 5}], 0},
               ingest
             )
  end

  defp flush do
    receive do
      {@call_start, _, _, _} -> flush()
    after
      0 -> :ok
    end
  end
end
