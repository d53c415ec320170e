defmodule Snakepit.Telemetry.GrpcStreamTest do
  # Real Python workers over real gRPC; GrpcStream is a global process.
  use ExUnit.Case, async: false

  alias Snakepit.GRPC.Client
  alias Snakepit.Telemetry.{GrpcStream, Naming}
  alias Snakepit.Test.PythonWorker

  import Snakepit.Test.Eventually

  @result_size [:snakepit, :python, :tool, :result_size]
  @call_stop [:snakepit, :python, :call, :stop]
  @grpc_events [
    [:snakepit, :grpc, :stream, :opened],
    [:snakepit, :grpc, :stream, :closed],
    [:snakepit, :grpc, :connection, :established],
    [:snakepit, :grpc, :connection, :lost],
    [:snakepit, :grpc, :connection, :reconnected]
  ]

  setup do
    ref = :telemetry_test.attach_event_handlers(self(), Naming.python_events() ++ @grpc_events)
    on_exit(fn -> :telemetry.detach(ref) end)
    worker_id = "w#{System.unique_integer([:positive])}"
    on_exit(fn -> GrpcStream.unregister_worker(worker_id) end)
    {:ok, worker_id: worker_id}
  end

  defp start_registered(worker_id, opts \\ []) do
    worker = PythonWorker.start!(Keyword.take(opts, [:port, :env]))

    ctx = %{worker_id: worker_id, pool_name: :test_pool, python_pid: worker.os_pid}

    {:ok, _} =
      GrpcStream.register_worker(
        worker.endpoint,
        ctx,
        Keyword.put(Keyword.get(opts, :stream, []), :token, worker.token)
      )

    assert_receive {[:snakepit, :grpc, :stream, :opened], _, _, %{worker_id: ^worker_id}}, 10_000
    {:ok, channel} = Client.connect(worker.endpoint, token: worker.token)
    Map.put(worker, :channel, channel)
  end

  defp emit(worker, params, opts \\ []) do
    {:ok, result} = Client.execute_tool(worker.channel, "emit_events", params, opts)
    result
  end

  # Controls travel on the telemetry stream, tool calls on another
  # connection: wait until the worker reports the setting before emitting.
  defp wait_for_state(worker, fun) do
    eventually(
      fn ->
        {:ok, state} = Client.execute_tool(worker.channel, "telemetry_state", %{})
        fun.(state) && state
      end,
      tries: 100,
      message: "worker never reached the expected state"
    )
  end

  describe "events from a real Python worker" do
    test "arrive with name, measurements and enriched metadata", %{worker_id: id} do
      w = start_registered(id)
      emit(w, %{count: 3, measurements: %{bytes: 7, custom_gauge: 1.5}, metadata: %{tool: "t"}})

      # Only this worker's events: async tests run other workers meanwhile.
      for _ <- 1..3 do
        assert_receive {@result_size, _, measurements, %{worker_id: ^id} = meta}, 5_000
        assert measurements == %{:bytes => 7, "custom_gauge" => 1.5}
        assert %{tool: "t", worker_id: ^id, pool_name: :test_pool, node: node} = meta
        assert node == node()
        assert meta.python_pid == w.os_pid
        assert is_integer(meta.timestamp_ns)
      end

      {:ok, stats} = GrpcStream.stats(id)
      assert stats.events_delivered >= 3
      assert stats.rpc == "StreamTelemetryBatched"
    end

    test "the correlation id passes through", %{worker_id: id} do
      w = start_registered(id)
      emit(w, %{count: 1}, correlation_id: "corr-42")
      assert_receive {@result_size, _, _, %{correlation_id: "corr-42"}}, 5_000
      assert_receive {@call_stop, _, %{duration: d}, %{correlation_id: "corr-42"}}, 5_000
      assert is_integer(d) and d > 0
    end

    test "the stock StreamTelemetry RPC works too", %{worker_id: id} do
      w = start_registered(id, stream: [rpc: :stock])
      emit(w, %{count: 2})
      assert_receive {@result_size, _, _, %{worker_id: ^id}}, 5_000
      assert {:ok, %{rpc: "StreamTelemetry"}} = GrpcStream.stats(id)
    end

    test "a crashing handler does not disturb the stream", %{worker_id: id} do
      w = start_registered(id)

      :telemetry.attach("crasher-#{id}", @result_size, fn _, _, _, _ -> raise "boom" end, nil)
      on_exit(fn -> :telemetry.detach("crasher-#{id}") end)

      ExUnit.CaptureLog.capture_log(fn ->
        emit(w, %{count: 2})
        assert_receive {@result_size, _, _, %{worker_id: ^id}}, 5_000
        assert_receive {@result_size, _, _, %{worker_id: ^id}}, 5_000
      end)

      emit(w, %{count: 1})
      assert_receive {@result_size, _, _, %{worker_id: ^id}}, 5_000
    end
  end

  describe "run-time control" do
    test "update_sampling 0.0 stops events and 1.0 restores them", %{worker_id: id} do
      w = start_registered(id)
      assert :ok = GrpcStream.update_sampling(id, 0.0)
      wait_for_state(w, &(&1["sampling_rate"] == 0.0))
      # Marked, because the polling calls above emit result_size events of
      # their own, and one sent before the rate applied may still arrive.
      emit(w, %{count: 20, measurements: %{bytes: 424_242}})
      refute_receive {@result_size, _, %{bytes: 424_242}, %{worker_id: ^id}}, 300

      assert :ok = GrpcStream.update_sampling(id, 1.0)
      wait_for_state(w, &(&1["sampling_rate"] == 1.0))
      emit(w, %{count: 1})
      assert_receive {@result_size, _, _, %{worker_id: ^id}}, 5_000
    end

    test "sampling with patterns affects only matching events", %{worker_id: id} do
      w = start_registered(id)
      assert :ok = GrpcStream.update_sampling(id, 0.0, ["tool.*"])
      wait_for_state(w, &(&1["sampling_patterns"] == ["tool.*"]))
      # Marked: a polling call's own result_size (emitted before the setting
      # reached the worker) may still be in flight.
      emit(w, %{count: 5, event: "tool.result_size", measurements: %{bytes: 535_353}})
      emit(w, %{count: 1, event: "python.memory.sampled", measurements: %{rss_bytes: 1}})
      assert_receive {[:snakepit, :python, :memory, :sampled], _, %{rss_bytes: 1}, _}, 5_000
      refute_received {@result_size, _, %{bytes: 535_353}, _}
    end

    test "toggle off and on", %{worker_id: id} do
      w = start_registered(id)
      assert :ok = GrpcStream.toggle(id, false)
      wait_for_state(w, &(&1["enabled"] == false))
      # Marked: a polling call's own result_size may still be in flight.
      emit(w, %{count: 5, measurements: %{bytes: 424_242}})
      refute_receive {@result_size, _, %{bytes: 424_242}, %{worker_id: ^id}}, 300

      assert :ok = GrpcStream.toggle(id, true)
      wait_for_state(w, &(&1["enabled"] == true))
      emit(w, %{count: 1})
      assert_receive {@result_size, _, _, %{worker_id: ^id}}, 5_000
    end

    test "allow and deny filters, deny wins", %{worker_id: id} do
      w = start_registered(id)
      assert :ok = GrpcStream.update_filter(id, allow: ["tool.*"], deny: ["tool.result_size"])
      wait_for_state(w, &(&1["deny"] == ["tool.result_size"]))
      # Marked, as above: a polling call's own result_size may be in flight.
      emit(w, %{count: 2, event: "tool.result_size", measurements: %{bytes: 636_363}})
      emit(w, %{count: 1, event: "tool.execution.start", measurements: %{system_time: 1}})
      emit(w, %{count: 1, event: "python.gc.completed", measurements: %{collected: 1}})
      assert_receive {[:snakepit, :python, :tool, :execution, :start], _, _, _}, 5_000
      flush_events_but(fn -> refute_received {@result_size, _, %{bytes: 636_363}, _} end)
      refute_received {[:snakepit, :python, :gc, :completed], _, _, _}
    end

    test "bad arguments return errors and never crash the server", %{worker_id: id} do
      pid = Process.whereis(GrpcStream)
      assert {:error, {:invalid_rate, 2}} = GrpcStream.update_sampling(id, 2)
      assert {:error, {:invalid_pattern, "a b"}} = GrpcStream.update_sampling(id, 0.5, ["a b"])
      assert {:error, {:invalid_enabled, :maybe}} = GrpcStream.toggle(id, :maybe)
      assert {:error, {:invalid_option, _}} = GrpcStream.update_filter(id, nope: [])
      assert {:error, :unknown_worker} = GrpcStream.toggle("no-such-worker", true)
      assert {:error, :unknown_worker} = GrpcStream.stats("no-such-worker")
      assert {:error, {:invalid_worker_id, 5}} = GrpcStream.stats(5)
      assert {:error, :unknown_worker} = GrpcStream.unregister_worker("no-such-worker")

      assert {:error, {:invalid_endpoint, _}} =
               GrpcStream.register_worker("nohost", %{worker_id: "x"})

      assert {:error, {:invalid_endpoint, _}} =
               GrpcStream.register_worker("h:99999", %{worker_id: "x"})

      assert {:error, {:invalid_worker_ctx, _}} = GrpcStream.register_worker("h:1", %{})

      assert {:error, {:invalid_option, _}} =
               GrpcStream.register_worker("h:1", %{worker_id: "x"}, credit: -1)

      assert Process.whereis(GrpcStream) == pid
    end
  end

  test "the reference's call shape: a channel map with :host and :port", %{worker_id: id} do
    w = PythonWorker.start!()
    channel = %{host: "127.0.0.1", port: w.port, adapter_payload: :anything}
    assert {:ok, _} = GrpcStream.register_worker(channel, %{worker_id: id}, token: w.token)
    assert_receive {[:snakepit, :grpc, :stream, :opened], _, _, %{worker_id: ^id}}, 10_000
    {:ok, ch} = Client.connect(w.endpoint, token: w.token)
    emit(%{channel: ch}, %{count: 3})
    assert_receive {[:snakepit, :python, :tool, :result_size], _, _, %{worker_id: ^id}}, 5_000

    for bad <- [%{host: "127.0.0.1", port: 0}, %{host: "a b", port: 1}, %{host: 1, port: 1}] do
      assert {:error, {:invalid_endpoint, _}} = GrpcStream.register_worker(bad, %{worker_id: "x"})
    end
  end

  describe "lifecycle" do
    test "a killed worker emits closed and lost; a restart on the same address reconnects",
         %{worker_id: id} do
      w = start_registered(id, stream: [backoff_initial_ms: 50, backoff_max_ms: 200])
      assert_receive {[:snakepit, :grpc, :connection, :established], _, %{duration: _}, _}, 5_000
      emit(w, %{count: 20})

      first =
        eventually(fn ->
          {:ok, s} = GrpcStream.stats(id)
          s.python_emitted > 20 and s.accounting.unaccounted == 0 and s.python_emitted
        end)

      PythonWorker.kill(w)

      assert_receive {[:snakepit, :grpc, :stream, :closed], _, %{message_count: _}, %{reason: _}},
                     5_000

      assert_receive {[:snakepit, :grpc, :connection, :lost], _, %{uptime: _},
                      %{worker_id: ^id, reason: reason, error_message: message}},
                     5_000

      # A stable kind to tag metrics with (closed_by_worker, unavailable, ...);
      # the transport's own text is beside it.
      assert reason =~ ~r/\A[a-z_]+\z/ and is_binary(message) and message != ""

      w2 = PythonWorker.start!(port: w.port, token: w.token)

      assert_receive {[:snakepit, :grpc, :connection, :reconnected], _, %{downtime: _},
                      %{worker_id: ^id}},
                     10_000

      {:ok, channel} = Client.connect(w2.endpoint, token: w2.token)
      emit(Map.put(w2, :channel, channel), %{count: 1})
      assert_receive {@result_size, _, _, %{worker_id: ^id}}, 5_000
      assert {:ok, %{reconnects: 1}} = GrpcStream.stats(id)

      # The new process counts from zero: its totals add to the first one's
      # (a running maximum would stay at `first`); nothing is unaccounted.
      eventually(fn ->
        {:ok, s} = GrpcStream.stats(id)
        s.python_emitted > first and s.accounting.unaccounted == 0 and s.python_lost == 0
      end)
    end

    test "settings are replayed after a reconnect", %{worker_id: id} do
      w = start_registered(id, stream: [backoff_initial_ms: 50, backoff_max_ms: 200])
      :ok = GrpcStream.update_filter(id, deny: ["tool.*"])
      wait_for_state(w, &(&1["deny"] == ["tool.*"]))
      PythonWorker.kill(w)
      w2 = PythonWorker.start!(port: w.port, token: w.token)

      assert_receive {[:snakepit, :grpc, :connection, :reconnected], _, _, %{worker_id: ^id}},
                     10_000

      {:ok, channel} = Client.connect(w2.endpoint, token: w2.token)
      w2 = Map.put(w2, :channel, channel)
      assert wait_for_state(w2, &(&1["deny"] == ["tool.*"]))["deny"] == ["tool.*"]
    end

    test "unregister ends the stream and its task", %{worker_id: id} do
      start_registered(id)
      assert Enum.any?(GrpcStream.list_streams(), &(&1.worker_id == id))
      assert :ok = GrpcStream.unregister_worker(id)

      assert_receive {[:snakepit, :grpc, :stream, :closed], _, _, %{reason: "unregistered"}},
                     5_000

      refute Enum.any?(GrpcStream.list_streams(), &(&1.worker_id == id))
      assert {:error, :unknown_worker} = GrpcStream.stats(id)
    end

    test "list_streams reads at a glance", %{worker_id: id} do
      w = start_registered(id)

      assert [%{worker_id: ^id, endpoint: endpoint, state: :open, pool_name: :test_pool} = row] =
               Enum.filter(GrpcStream.list_streams(), &(&1.worker_id == id))

      assert endpoint == w.endpoint
      assert Map.has_key?(row, :events_delivered) and Map.has_key?(row, :python_dropped)
    end

    test "a restarted GrpcStream ends the old tasks and accepts registrations again",
         %{worker_id: id} do
      w = start_registered(id)
      old = Process.whereis(GrpcStream)
      Process.exit(old, :kill)
      # The old task notices its owner is gone (the handle is collected) and
      # the worker sees its stream close.
      wait_until(fn -> Process.whereis(GrpcStream) not in [nil, old] end)
      assert GrpcStream.list_streams() == []
      # No Rust task outlives the process it delivered to.
      wait_until(fn -> Snakepit.Telemetry.Native.streams_running() == 0 end, 50)

      {:ok, _} =
        GrpcStream.register_worker(w.endpoint, %{worker_id: id, pool_name: :test_pool},
          token: w.token
        )

      assert_receive {[:snakepit, :grpc, :stream, :opened], _, _, %{worker_id: ^id}}, 10_000
      emit(w, %{count: 1})
      assert_receive {@result_size, _, _, %{worker_id: ^id}}, 5_000
      wait_until(fn -> state(w)["active_streams"] == 1 end)
    end
  end

  defp state(w) do
    {:ok, s} = Client.execute_tool(w.channel, "telemetry_state", %{})
    s
  end

  defp wait_until(fun, tries \\ 100), do: eventually(fun, tries: tries)

  defp flush_events_but(assertion) do
    Process.sleep(300)
    assertion.()
  end
end
