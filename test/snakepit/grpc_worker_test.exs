defmodule Snakepit.GRPCWorkerTest do
  use ExUnit.Case, async: false

  alias Snakepit.GRPCWorker
  alias Snakepit.Telemetry.Naming
  alias Snakepit.Test.PythonWorker

  @events Naming.python_events() ++
            [Naming.worker_event(:spawned), Naming.worker_event(:terminated)] ++
            Naming.grpc_events()

  setup do
    ref = :telemetry_test.attach_event_handlers(self(), @events)
    on_exit(fn -> :telemetry.detach(ref) end)
    id = "gw#{System.unique_integer([:positive])}"
    {:ok, id: id}
  end

  defp start_worker(id, opts \\ []) do
    start_supervised!({GRPCWorker, [id: id, pool_name: :worker_test] ++ opts})
  end

  # A worker that also loads a tool module of test/support.
  defp start_with_tools(id, module, env \\ []) do
    support = Path.expand("../support", __DIR__)
    start_worker(id, args: ["--tool-module", module], python_path: [support], env: env)
  end

  test "an output line over the limit is counted whole, never read as the lines it was cut into",
       %{id: id} do
    pid = start_with_tools(id, "output_tools")

    ref =
      :telemetry_test.attach_event_handlers(self(), [[:snakepit, :python, :tool, :result_size]])

    on_exit(fn -> :telemetry.detach(ref) end)
    max = Snakepit.Telemetry.Catalog.limits().max_stderr_line_bytes
    event = fn n -> ~s(TELEMETRY:{"event":"tool.result_size","measurements":{"bytes":#{n}}}) end
    # The port hands this over as max bytes of padding, then an event's text.
    line = String.duplicate("x", max) <> event.(424_242)
    before = Snakepit.Telemetry.PythonCapture.stats()
    {:ok, _} = GRPCWorker.execute(pid, "write_output", %{text: line})
    # A line after it: once its event is here, the long one was handled.
    {:ok, _} = GRPCWorker.execute(pid, "write_output", %{text: event.(777)})
    assert_receive {[:snakepit, :python, :tool, :result_size], _, %{bytes: 777}, _}, 5_000

    refute_received {[:snakepit, :python, :tool, :result_size], _, %{bytes: 424_242}, _}
    after_ = Snakepit.Telemetry.PythonCapture.stats()

    assert after_.malformed_by_reason[:line_too_long] ==
             (before.malformed_by_reason[:line_too_long] || 0) + 1
  end

  test "a mistyped interpreter: {:python_not_found, path}, an error saying what to do, spawn_failed",
       %{id: id} do
    events = [Naming.worker_event(:spawn_started), Naming.worker_event(:spawn_failed)]
    ref = :telemetry_test.attach_event_handlers(self(), events)
    on_exit(fn -> :telemetry.detach(ref) end)
    Process.flag(:trap_exit, true)

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        assert {:error, {:python_not_found, "/no/such/python"}} =
                 GRPCWorker.start_link(id: id, pool_name: :worker_test, python: "/no/such/python")

        assert {:error, {:python_not_found, "no-such-python-xyz"}} =
                 GRPCWorker.start_link(
                   id: id,
                   pool_name: :worker_test,
                   python: "no-such-python-xyz"
                 )
      end)

    assert log =~ "Python interpreter not found: \"/no/such/python\""
    assert log =~ "python_executable" and log =~ "mix snakepit.setup"

    assert_receive {[:snakepit, :pool, :worker, :spawn_started], _, %{system_time: _},
                    %{worker_id: ^id}}

    assert_receive {[:snakepit, :pool, :worker, :spawn_failed], _, %{duration: _},
                    %{worker_id: ^id, reason: {:python_not_found, _}, retry_count: 0}}
  end

  defp error_entries(log), do: length(String.split(log, "[error]")) - 1

  test "a worker that exits before it is ready: one error entry with its output, spawn_failed",
       %{id: id} do
    ref = :telemetry_test.attach_event_handlers(self(), [Naming.worker_event(:spawn_failed)])
    on_exit(fn -> :telemetry.detach(ref) end)
    Process.flag(:trap_exit, true)

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        assert {:error, {:python_exited_before_ready, 2}} =
                 GRPCWorker.start_link(id: id, pool_name: :worker_test, args: ["--no-such-flag"])
      end)

    assert error_entries(log) == 1, log
    assert log =~ "exited with status 2 before it was ready"
    assert log =~ Snakepit.Python.executable()
    assert log =~ "unrecognized arguments: --no-such-flag"
    assert log =~ "mix snakepit.doctor"
    assert_receive {[:snakepit, :pool, :worker, :spawn_failed], _, _, %{worker_id: ^id}}
  end

  @tag :tmp_dir
  test "grpcio missing: one error entry naming the module and the fix", %{id: id, tmp_dir: dir} do
    # An interpreter without site-packages: the worker's dependencies are missing.
    python = Path.join(dir, "python-without-site")
    File.write!(python, "#!/bin/sh\nexec #{Snakepit.Python.executable()} -S \"$@\"\n")
    File.chmod!(python, 0o755)
    Process.flag(:trap_exit, true)

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        assert {:error, {:python_exited_before_ready, 1}} =
                 GRPCWorker.start_link(id: id, pool_name: :worker_test, python: python)
      end)

    assert error_entries(log) == 1, log
    assert log =~ "No module named 'grpc'" and log =~ "grpcio"
    assert log =~ "mix snakepit.setup" and log =~ python
  end

  test "a tool module that cannot be imported: one error entry naming it and the path searched",
       %{id: id} do
    Process.flag(:trap_exit, true)
    support = Path.expand("../support", __DIR__)

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        assert {:error, {:python_exited_before_ready, 1}} =
                 GRPCWorker.start_link(
                   id: id,
                   pool_name: :worker_test,
                   args: ["--tool-module", "my_app.no_such_tools"],
                   python_path: [support]
                 )
      end)

    assert error_entries(log) == 1, log
    assert log =~ "cannot import tool module 'my_app.no_such_tools'"
    assert log =~ support
    assert log =~ ":python_path"
  end

  test "python_path puts folders on the worker's PYTHONPATH, before the library's",
       %{id: id} do
    support = Path.expand("../support", __DIR__)
    pid = start_worker(id, args: ["--tool-module", "output_tools"], python_path: [support])
    assert {:ok, _} = GRPCWorker.execute(pid, "write_output", %{text: "hello"})
    Process.flag(:trap_exit, true)

    for bad <- ["not-a-list", [:atom], ["ok", 1], ["a\0b"]] do
      assert {:error, {:invalid_option, {:python_path, ^bad}}} =
               GRPCWorker.start_link(id: id <> "b", python_path: bad)
    end
  end

  test "a trace started in Elixir goes on in Python: its trace id reaches :telemetry",
       %{id: id} do
    pid = start_with_tools(id, "tracing_tools", [{"SNAKEPIT_OTEL_CONSOLE", "false"}])

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    tp = "00-#{trace_id}-00f067aa0ba902b7-01"
    {:ok, _} = GRPCWorker.execute(pid, "ping", %{}, traceparent: tp, correlation_id: "c-tr")

    assert_receive {[:snakepit, :python, :call, :start], _, _,
                    %{correlation_id: "c-tr", trace_id: ^trace_id, span_id: call_span}},
                   5_000

    assert_receive {[:snakepit, :python, :tool, :execution, :start], _, _,
                    %{correlation_id: "c-tr", trace_id: ^trace_id, span_id: tool_span}},
                   5_000

    # Each span its own id, none of them the Elixir parent's.
    assert call_span != tool_span and "00f067aa0ba902b7" not in [call_span, tool_span]
  end

  test "emits spawned when ready and terminated when stopped; the Python process ends", %{id: id} do
    pid = start_worker(id)

    assert_receive {[:snakepit, :pool, :worker, :spawned], _, %{duration: d, system_time: _},
                    %{
                      worker_id: ^id,
                      pool_name: :worker_test,
                      worker_pid: ^pid,
                      python_port: port,
                      mode: :grpc
                    }}

    assert d > 0 and is_integer(port)
    {:ok, %{python_pid: os_pid}} = GRPCWorker.info(pid)
    assert PythonWorker.alive?(%{os_pid: os_pid})

    {:ok, _} = GRPCWorker.execute(pid, "ping", %{})
    GenServer.stop(pid)

    assert_receive {[:snakepit, :pool, :worker, :terminated], _,
                    %{lifetime: _, total_commands: 1},
                    %{worker_id: ^id, reason: :normal, planned: true}}

    refute PythonWorker.alive?(%{os_pid: os_pid})
  end

  test "a tool call's correlation id is on every Python event of the call", %{id: id} do
    pid = start_worker(id)

    assert {:ok, %{"operation" => "test"}} =
             GRPCWorker.execute(pid, "telemetry_demo", %{operation: "test", delay_ms: 10},
               correlation_id: "corr-tool-1"
             )

    for event <- [
          [:snakepit, :python, :call, :start],
          [:snakepit, :python, :tool, :execution, :start],
          [:snakepit, :python, :tool, :execution, :stop],
          [:snakepit, :python, :tool, :result_size],
          [:snakepit, :python, :call, :stop]
        ] do
      assert_receive {^event, _, _, %{correlation_id: "corr-tool-1", worker_id: ^id}}, 5_000
    end

    assert_receive {[:snakepit, :grpc, :call, :stop], _, %{duration: _},
                    %{correlation_id: "corr-tool-1", rpc_method: "ExecuteTool", grpc_status: "OK"}}
  end

  test "a failing tool: exception and error events, {:error, _} to the caller", %{id: id} do
    pid = start_worker(id)

    assert {:error, {:tool_error, message}} =
             GRPCWorker.execute(pid, "fail", %{}, correlation_id: "c-fail")

    assert message =~ "fail"

    assert_receive {[:snakepit, :python, :call, :exception], _, %{duration: _},
                    %{correlation_id: "c-fail"}},
                   5_000

    assert_receive {[:snakepit, :python, :error, :occurred], _, _,
                    %{correlation_id: "c-fail", error_type: _, error_message: _, traceback: tb}},
                   5_000

    assert byte_size(tb) > 0
    # The RPC itself succeeded: the tool failed, and the event says which.
    assert_receive {[:snakepit, :grpc, :call, :exception], _, _,
                    %{correlation_id: "c-fail", grpc_status: "OK", error_type: :tool_error}}
  end

  test "memory, cpu and gc samples arrive", %{id: id} do
    start_worker(id, args: ["--sample-interval-ms", "100"])

    assert_receive {[:snakepit, :python, :memory, :sampled], _, %{rss_bytes: rss, vms_bytes: _},
                    %{worker_id: ^id}},
                   5_000

    assert rss > 0

    assert_receive {[:snakepit, :python, :cpu, :sampled], _, %{cpu_percent: _},
                    %{worker_id: ^id}},
                   5_000

    assert_receive {[:snakepit, :python, :gc, :completed], _,
                    %{duration: _, collected: _, generation: _}, %{worker_id: ^id}},
                   5_000
  end

  test "a worker that never becomes ready fails start-up with a clear error", %{id: id} do
    Process.flag(:trap_exit, true)

    # An "interpreter" that runs but never prints the ready line.
    silent = Path.join(System.tmp_dir!(), "silent_python_#{id}.sh")
    File.write!(silent, "#!/bin/sh\nexec sleep 10\n")
    File.chmod!(silent, 0o755)
    on_exit(fn -> File.rm(silent) end)

    assert {:error, {:python_not_ready, message}} =
             GRPCWorker.start_link(id: id, python: silent, ready_timeout: 300)

    assert message =~ "SNAKEPIT_READY"
  end

  test "a worker whose interpreter is missing fails start-up", %{id: id} do
    Process.flag(:trap_exit, true)
    assert {:error, _} = GRPCWorker.start_link(id: id, python: "/bin/false", ready_timeout: 2_000)
  end
end
