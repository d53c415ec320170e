defmodule Snakepit.Robustness.ApiArgumentsTest do
  # Issue 11, class 8: every public function validates its arguments and
  # answers {:error, reason}. Before the fix: endpoints with NUL or newline
  # were accepted and retried forever, any term became `pool_name`, `[nil]`
  # passed as a pattern and raised in the NIF, an improper list in tool
  # params made the NIF panic, bad tool options raised after
  # `grpc.call.start`, `size: 0` started 2 workers, misspelled pool options
  # were ignored, and a register call that timed out still registered.
  use ExUnit.Case, async: false

  alias Snakepit.GRPC.Client
  alias Snakepit.{GRPCWorker, Pool}
  alias Snakepit.Telemetry.{Catalog, Control, GrpcStream, PythonCapture}

  @call_events [
    [:snakepit, :grpc, :call, :start],
    [:snakepit, :grpc, :call, :stop],
    [:snakepit, :grpc, :call, :exception]
  ]

  test "register_worker refuses bad endpoints, contexts and options, registering nothing" do
    before = GrpcStream.list_streams()

    for endpoint <- [
          "h\0st:1",
          "host:1\n",
          "ho st:1",
          "%zz:1",
          "host:0",
          "host:65536",
          "host:1:2",
          "::1:80",
          "host:+80",
          "host: 80",
          ":80",
          String.duplicate("h", 300) <> ":80",
          'host:80',
          nil
        ] do
      assert {:error, {:invalid_endpoint, _}} =
               GrpcStream.register_worker(endpoint, %{worker_id: "x"}),
             inspect(endpoint)
    end

    for ctx <- [
          %{},
          %{worker_id: ""},
          %{worker_id: String.duplicate("w", 129)},
          %{worker_id: <<255, 254>>},
          %{worker_id: :atom},
          %{worker_id: "x", pool_name: String.duplicate("p", 10_000)},
          %{worker_id: "x", pool_name: %{}},
          %{worker_id: "x", pool_name: self()},
          %{worker_id: "x", python_pid: -1},
          %{worker_id: "x", python_port: 70_000},
          [:not, :keyword],
          "worker"
        ] do
      assert {:error, _} = GrpcStream.register_worker("127.0.0.1:1", ctx), inspect(ctx)
    end

    for opts <- [
          [credit: -1],
          [credit: 10_000],
          [max_batch: 0],
          [rpc: :fast],
          [window_bytes: 1],
          [keepalive_interval_ms: 10],
          [owner: :not_a_pid],
          [bogus: 1],
          [{"credit", 1}],
          :not_a_list
        ] do
      assert {:error, _} = GrpcStream.register_worker("127.0.0.1:1", %{worker_id: "x"}, opts),
             inspect(opts)
    end

    for ok <- ["localhost:50051", "127.0.0.1:1", "127.9.9.9:1", "[::1]:80"] do
      assert {:ok, _} = GrpcStream.register_worker(ok, %{worker_id: "ok"})
      :ok = GrpcStream.unregister_worker("ok")
    end

    # Plain text leaves this machine only when asked.
    for remote <- ["a-b.example:443", "10.0.0.1:1", "[fe80::1]:1", "localhost.evil:1"] do
      assert {:error, {:insecure_endpoint, ^remote}} =
               GrpcStream.register_worker(remote, %{worker_id: "ok"})

      assert {:error, {:insecure_endpoint, ^remote}} = Client.connect(remote)
      assert {:ok, _} = GrpcStream.register_worker(remote, %{worker_id: "ok"}, insecure: true)
      :ok = GrpcStream.unregister_worker("ok")
    end

    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    for bad <- [
          [ca: 1],
          [ca_file: "/nonexistent"],
          [cert: "x"],
          [bogus: 1],
          :tls,
          [ca: "x", key: "k"],
          [ca: "not a pem"],
          [ca: "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"],
          [ca: pem, cert: pem, key: pem]
        ] do
      assert {:error, {:invalid_option, {:tls, _}}} =
               GrpcStream.register_worker("127.0.0.1:1", %{worker_id: "ok"}, tls: bad)
    end

    assert GrpcStream.list_streams() == before
  end

  test "a register call that times out leaves nothing registered" do
    pid = Process.whereis(GrpcStream)
    :sys.suspend(pid)
    result = GrpcStream.register_worker("127.0.0.1:1", %{worker_id: "late"})
    :sys.resume(pid)
    assert result == {:error, :timeout}
    # The cast that withdraws the request follows the request itself.
    assert {:error, :unknown_worker} = GrpcStream.stats("late")
    :sys.get_state(pid)
    assert {:error, :unknown_worker} = GrpcStream.stats("late")
  end

  test "controls refuse nil, improper lists and oversized patterns" do
    {:ok, _} = GrpcStream.register_worker("127.0.0.1:1", %{worker_id: "ctl"})
    on_exit(fn -> GrpcStream.unregister_worker("ctl") end)

    for patterns <- [
          [nil],
          [:atom],
          ["ok", nil],
          ["a" | "b"],
          [String.duplicate("p", Catalog.limits().max_pattern_bytes + 1)]
        ] do
      assert {:error, _} = GrpcStream.update_sampling("ctl", 0.5, patterns), inspect(patterns)
      assert {:error, _} = GrpcStream.update_filter("ctl", allow: patterns), inspect(patterns)
      assert {:error, _} = Control.patterns(patterns)
    end

    for opts <- [[nil], [{:allow, []} | :improper], [allow: nil], %{allow: []}, "x"] do
      assert {:error, _} = GrpcStream.update_filter("ctl", opts), inspect(opts)
    end

    for rate <- [:nan, -0.1, 1.1, "0.5", nil] do
      assert {:error, {:invalid_rate, _}} = GrpcStream.update_sampling("ctl", rate)
    end
  end

  test "tool calls refuse bad arguments with errors; every start has its end" do
    ref = :telemetry_test.attach_event_handlers(self(), @call_events)
    on_exit(fn -> :telemetry.detach(ref) end)
    {:ok, pool} = Pool.start_link(name: :api_args, size: 1, status_interval: nil)
    on_exit(fn -> if Process.alive?(pool), do: Pool.stop(:api_args) end)
    [worker] = Pool.workers(:api_args)
    {:ok, %{channel: channel}} = GRPCWorker.info(worker)

    for params <- [%{x: [1 | 2]}, %{x: {1, 2}}, %{x: self()}, %{x: <<255>>}, %{{:a} => 1}] do
      assert {:error, {:invalid_params, _}} = GRPCWorker.execute(worker, "ping", params)
    end

    assert {:error, {:invalid_params, _}} = GRPCWorker.execute(worker, "ping", [1, 2])
    assert {:error, {:invalid_params, _}} = GRPCWorker.execute(worker, "ping", "params")

    for opts <- [
          [timeout: -1],
          [timeout: :infinity],
          [correlation_id: 5],
          [metadata: %{a: 1}],
          [metadata: [1]],
          [session_id: self()],
          [traceparent: "00-nothex"],
          [traceparent: String.duplicate("0", 55)],
          [traceparent: :tp]
        ] do
      assert {:error, {:invalid_option, _}} = GRPCWorker.execute(worker, "ping", %{}, opts),
             inspect(opts)
    end

    # Over the catalog's limit the worker would drop every event of the call:
    # refused before anything is sent, naming the limit.
    max = Catalog.limits().max_correlation_id_bytes
    long = String.duplicate("c", max + 1)

    assert {:error, {:correlation_id_too_long, ^max}} =
             GRPCWorker.execute(worker, "ping", %{}, correlation_id: long)

    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert {:ok, _} = GRPCWorker.execute(worker, "ping", %{}, traceparent: tp)
    assert {:error, _} = GRPCWorker.execute(worker, "ping", %{}, [:not_keyword])
    assert {:error, _} = Client.execute_tool(make_ref(), "ping", %{})
    assert {:error, _} = Client.execute_tool(channel, "", %{})
    assert {:error, _} = Client.execute_tool(channel, :ping, %{})
    assert {:error, _} = Client.connect("h\0:1")
    assert {:error, _} = Client.connect(nil)
    assert {:ok, %{"pong" => true}} = GRPCWorker.execute(worker, "ping", %{})

    starts = count_received([:snakepit, :grpc, :call, :start])

    ends =
      count_received([:snakepit, :grpc, :call, :stop]) +
        count_received([:snakepit, :grpc, :call, :exception])

    # Options are refused before the start event; parameters the NIF cannot
    # encode get their exception event (5 here), the three pings their stop.
    assert starts == ends and starts == 8
  end

  test "Pool.start_link refuses bad sizes, names and unknown options, starting nothing" do
    for opts <- [
          [name: :p0, size: 0],
          [name: :p1, size: -1],
          [name: :p2, size: "2"],
          [name: :p3, size: 1_000],
          [name: :p4, sise: 2],
          [name: "p5"],
          [name: nil],
          [name: :p6, status_interval: 0],
          [name: :p7, adapter_module: :mod],
          [:not, :keyword]
        ] do
      assert {:error, _} = Pool.start_link(opts), inspect(opts)
    end

    assert Pool.workers(:p0) == [] and Pool.checkout(:p4) == {:error, :no_pool}
  end

  test "GRPCWorker and PythonCapture refuse bad start options with an error, not a crash" do
    Process.flag(:trap_exit, true)

    for opts <- [
          [],
          [id: ""],
          [id: :atom],
          [id: "w", bogus: 1],
          [id: "w", args: "--x"],
          [id: "w", args: ["a" | "b"]],
          [id: "w", env: [1]],
          [id: "w", ready_timeout: 0],
          [id: "w", pool_name: "p"],
          [id: "w", stream: :x],
          [id: "w", max_delay_ms: -1],
          [id: "w", max_delay_ms: "5"],
          [id: "w", max_delay_ms: 10_001],
          [id: "w", endpoint: "h\0:1"],
          [id: "w", endpoint: "127.0.0.1:1", token: "short"],
          [id: "w", endpoint: "127.0.0.1:1", tls: [ca: 1]],
          [id: "w", endpoint: "127.0.0.1:1", insecure: :yes],
          :not_a_list
        ] do
      assert {:error, _} = GRPCWorker.start_link(opts), inspect(opts)
    end

    for opts <- [
          [],
          [executable: :python],
          [executable: "/bin/true", args: [1]],
          [executable: "/bin/true", env: [{"A", 1}]],
          [executable: "/bin/true", notify: :me],
          [executable: "/bin/true", context: "ctx"]
        ] do
      assert {:error, _} = PythonCapture.start_link(opts), inspect(opts)
    end

    refute_received {:EXIT, _, _}
  end

  test "PythonCapture.handle_line refuses what is not a line or a context" do
    assert {:error, _} = PythonCapture.handle_line(:line, %{})
    assert {:error, _} = PythonCapture.handle_line("TELEMETRY:{}", [1, 2])
    assert {:error, _} = PythonCapture.handle_line("TELEMETRY:{}", "ctx")
  end

  defp count_received(event, n \\ 0) do
    receive do
      {^event, _, _, _} -> count_received(event, n + 1)
    after
      100 -> n
    end
  end
end
