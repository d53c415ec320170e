defmodule Snakepit.Telemetry.HostileInputTest do
  # Not async: measures the whole BEAM's memory.
  use ExUnit.Case, async: false

  import Snakepit.Test.Eventually, only: [eventually: 2]

  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.{GrpcStream, PythonCapture}
  alias Snakepit.Test.{HostileWorker, PythonWorker}

  # The bounds this test holds the project to while hostile peers send 10 MB
  # frames and a million metadata keys over and over (README "Bounds"):
  # BEAM memory (:erlang.memory(:total)) may grow by at most 16 MiB, the
  # process (BEAM + the NIF's buffers, RSS) by at most 64 MiB. A frame over
  # max_frame_bytes is refused from its 5-byte header, before its body is
  # buffered; nothing of it ever reaches the BEAM.
  @max_beam_growth 16 * 1024 * 1024
  @max_rss_growth 64 * 1024 * 1024

  @call_start [:snakepit, :python, :call, :start]
  @result_size [:snakepit, :python, :tool, :result_size]

  @tag timeout: 120_000
  test "hostile gRPC peers are refused and counted; memory stays bounded; a healthy stream goes on" do
    # The healthy worker's queue holds 10 s of its load: on this 2-core
    # machine the hostile peers (Python building 10 MB frames every 50 ms)
    # and a busy neighbour can starve its sender thread for longer than the
    # default queue (4096 events, 0.4 s here) lasts, and the drops that
    # follow are CPU starvation of the test machine, not the hostile bytes
    # reaching the healthy stream (seen once: 567 queue_full of 40,000).
    healthy = PythonWorker.start!(args: ["--sample-interval-ms", "0", "--max-buffer", "100000"])

    {:ok, _} =
      GrpcStream.register_worker(healthy.endpoint, %{worker_id: "healthy"}, token: healthy.token)

    {:ok, channel} = Client.connect(healthy.endpoint, token: healthy.token)
    counter = count_events("hostile-test-healthy", @result_size, "healthy")
    on_exit(fn -> GrpcStream.unregister_worker("healthy") end)

    peers = %{
      "huge_frame" => HostileWorker.start!("huge_frame"),
      "million_keys" => HostileWorker.start!("many_keys"),
      "many_keys" => HostileWorker.start!("many_keys", ["--keys", "200000"]),
      "garbage" => HostileWorker.start!("garbage")
    }

    # The healthy worker emits 10,000 events/s throughout; memory is measured
    # from a second into its load, so what grows after is the hostile peers'.
    load =
      Task.async(fn ->
        Client.execute_tool(
          channel,
          "emit_events",
          %{count: 40_000, interval_ms: 0.1, metadata: %{load: "healthy"}},
          timeout: 60_000
        )
      end)

    Process.sleep(1_000)
    :erlang.garbage_collect()
    beam_before = :erlang.memory(:total)
    rss_before = rss()
    sampler = start_sampler()

    for {id, peer} <- peers do
      {:ok, _} =
        GrpcStream.register_worker(peer.endpoint, %{worker_id: id},
          backoff_initial_ms: 50,
          backoff_max_ms: 200
        )

      on_exit(fn -> GrpcStream.unregister_worker(id) end)
    end

    rejected = fn id, reason ->
      {:ok, s} = GrpcStream.stats(id)
      Map.get(s.rejected_by_reason, reason, 0)
    end

    delivered = fn id -> elem(GrpcStream.stats(id), 1).events_delivered end
    opts = [tries: 1_000, interval: 20]

    # Oversized frames break their connection (the gRPC size check fails the
    # stream); each one is counted, and the stream reconnects with backoff.
    eventually(fn -> rejected.("huge_frame", :frame_too_large) >= 3 end, opts)
    eventually(fn -> rejected.("million_keys", :frame_too_large) >= 3 end, opts)
    # Within the frame limit, 200,000 metadata keys reject their event only:
    # the valid events of the same stream are delivered.
    eventually(fn -> rejected.("many_keys", :too_many_metadata) >= 3 end, opts)
    eventually(fn -> delivered.("many_keys") >= 30 end, opts)
    # Garbage: a frame that is no protobuf counts as one malformed frame, a
    # broken event inside a good frame as one malformed event; the rest
    # passes.
    eventually(fn -> rejected.("garbage", :malformed) >= 6 end, opts)
    eventually(fn -> delivered.("garbage") >= 30 end, opts)

    # Meanwhile the healthy worker's events kept arriving, all of them.
    {:ok, {:ok, %{"emitted" => 40_000}}} = Task.yield(load, 60_000)

    eventually(
      fn -> :counters.get(counter, 1) == 40_000 end,
      opts ++
        [
          message: fn _ ->
            "handler saw #{:counters.get(counter, 1)}; #{inspect(GrpcStream.stats("healthy"))}"
          end
        ]
    )

    assert {:ok, %{rejected: 0, python_dropped: 0}} = GrpcStream.stats("healthy")

    {beam_peak, rss_peak} = stop_sampler(sampler)

    assert beam_peak - beam_before <= @max_beam_growth,
           "BEAM memory grew by #{mib(beam_peak - beam_before)}"

    assert rss_peak - rss_before <= @max_rss_growth,
           "RSS grew by #{mib(rss_peak - rss_before)}"

    for id <- ["huge_frame", "million_keys"] do
      {:ok, s} = GrpcStream.stats(id)
      assert s.last_error =~ "too large" and s.events_delivered == 0
    end
  end

  @tag timeout: 60_000
  test "hostile stderr lines (10 MB, deep nesting, 100,000 keys) are refused and counted; the next line passes" do
    script = """
    import json, sys
    w = sys.stdout.write
    w("TELEMETRY:" + json.dumps({"event": "python.call.start", "metadata": {"x": "y" * 10_000_000}}) + "\\n")
    w("TELEMETRY:" + "[" * 100_000 + "]" * 100_000 + "\\n")
    w("TELEMETRY:{\\"event\\": \\"python.call.start\\", \\"metadata\\": {" + "{" * 50_000 + "\\n")
    w("TELEMETRY:" + json.dumps({"event": "python.call.start", "metadata": {f"k{i}": "v" for i in range(100_000)}}) + "\\n")
    w("TELEMETRY:" + json.dumps({"event": "python.call.start", "metadata": {f"k{i}": "v" for i in range(1_000)}}) + "\\n")
    w("TELEMETRY:" + json.dumps({"event": "python.call.start", "metadata": {"after": "hostile"}}) + "\\n")
    """

    ref = :telemetry_test.attach_event_handlers(self(), [@call_start])
    on_exit(fn -> :telemetry.detach(ref) end)
    before = PythonCapture.stats()
    :erlang.garbage_collect()
    beam_before = :erlang.memory(:total)
    sampler = start_sampler()

    {:ok, pid} =
      PythonCapture.start_link(
        executable: Snakepit.Python.executable(),
        args: ["-c", script],
        context: %{worker_id: "hostile_stderr"},
        notify: self()
      )

    assert_receive {:python_capture_exit, ^pid, 0}, 30_000

    assert_receive {@call_start, ^ref, _, %{"after" => "hostile", worker_id: "hostile_stderr"}},
                   5_000

    refute_received {@call_start, ^ref, _, _}
    {beam_peak, _} = stop_sampler(sampler)
    now = PythonCapture.stats()

    diff = fn reason ->
      Map.get(now.malformed_by_reason, reason, 0) - Map.get(before.malformed_by_reason, reason, 0)
    end

    # Each long line (10 MB, 200,000 brackets, 100,000 keys: all over 64 KiB)
    # is dropped by its length before parsing; 50,000 open braces parse to
    # serde_json's recursion limit; 1,000 keys parse and are refused.
    assert diff.(:line_too_long) == 3
    assert diff.(:invalid_json) == 1
    assert diff.(:too_many_metadata) == 1
    # Lines beyond the limit are never held whole: at most one line's worth.
    assert beam_peak - beam_before <= @max_beam_growth,
           "BEAM memory grew by #{mib(beam_peak - beam_before)}"
  end

  # Counts `event` deliveries of the load (metadata "load") from `worker_id`
  # with a real handler.
  defp count_events(handler_id, event, worker_id) do
    counter = :counters.new(1, [])

    :telemetry.attach(handler_id, event, &__MODULE__.count/4, {counter, worker_id})
    on_exit(fn -> :telemetry.detach(handler_id) end)
    counter
  end

  @doc false
  def count(_event, _measurements, %{"load" => _, worker_id: id}, {counter, id}),
    do: :counters.add(counter, 1, 1)

  def count(_event, _measurements, _metadata, _config), do: :ok

  # Samples BEAM memory and RSS every 5 ms; returns their peaks when stopped.
  defp start_sampler do
    spawn_link(fn -> sample(0, 0) end)
  end

  defp sample(beam, rss) do
    receive do
      {:stop, from} -> send(from, {:peaks, beam, rss})
    after
      5 -> sample(max(beam, :erlang.memory(:total)), max(rss, rss()))
    end
  end

  defp stop_sampler(pid) do
    send(pid, {:stop, self()})
    assert_receive {:peaks, beam, rss}, 1_000
    {beam, rss}
  end

  defp rss do
    "/proc/#{System.pid()}/status"
    |> File.read!()
    |> then(&Regex.run(~r/VmRSS:\s+(\d+) kB/, &1))
    |> then(fn [_, kb] -> String.to_integer(kb) * 1024 end)
  end

  defp mib(bytes), do: "#{Float.round(bytes / 1_048_576, 1)} MiB"
end
