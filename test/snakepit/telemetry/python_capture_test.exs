defmodule Snakepit.Telemetry.PythonCaptureTest do
  # Not async: reads the module's global counters and captures the log.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Snakepit.Telemetry.{Naming, PythonCapture}
  alias Snakepit.Test.PythonHelpers

  @ctx %{worker_id: "w_test", pool_name: :test_pool, python_pid: 4242}

  setup do
    ref = :telemetry_test.attach_event_handlers(self(), Naming.python_events())
    on_exit(fn -> :telemetry.detach(ref) end)
    :ok
  end

  describe "handle_line/2" do
    test "a telemetry line becomes an enriched :telemetry event" do
      line =
        ~s(TELEMETRY:{"event":"tool.execution.stop","measurements":{"duration":2000},) <>
          ~s("metadata":{"tool":"predict"},"correlation_id":"req-9"})

      assert PythonCapture.handle_line(line, @ctx) == :event

      assert_receive {[:snakepit, :python, :tool, :execution, :stop], _ref, measurements, meta}
      assert measurements.duration == System.convert_time_unit(2000, :nanosecond, :native)

      assert %{tool: "predict", correlation_id: "req-9", worker_id: "w_test"} = meta
      assert %{pool_name: :test_pool, python_pid: 4242} = meta
      assert meta.node == node() and is_integer(meta.timestamp_ns)
    end

    test "other lines go to Logger with the worker id" do
      log = capture_log(fn -> assert PythonCapture.handle_line("hello", @ctx) == :log end)
      assert log =~ "hello"
      refute_receive {_, _, _, _}
    end

    test "a worker's log line keeps its level: an ERROR survives level: :warning" do
      lines = [
        {"snakepit-worker[7] ERROR tool crashed", :error},
        {"snakepit-worker[7] CRITICAL gone", :error},
        {"snakepit-worker[7] WARNING slow", :warning},
        {"snakepit-worker[7] INFO listening", :info},
        {"snakepit-worker[7] DEBUG detail", :debug},
        {"Traceback (most recent call last):", :error},
        {"ModuleNotFoundError: No module named 'grpc'", :error},
        {"  File \"x.py\", line 1, in <module>", :info},
        {"plain print output", :info}
      ]

      for {line, level} <- lines, do: assert(PythonCapture.log_level(line) == level, line)

      log =
        capture_log([level: :warning], fn ->
          for {line, _} <- lines, do: PythonCapture.handle_line(line, @ctx)
        end)

      assert log =~ "tool crashed" and log =~ "No module named 'grpc'" and log =~ "slow"
      refute log =~ "listening" or log =~ "plain print output"
    end

    test "a worker's record of several lines (a traceback) is one entry with its newlines" do
      line =
        "snakepit-worker[7] ERROR tool failed\u2028Traceback (most recent call last):" <>
          "\u2028  File \"t.py\", line 3\u2028ValueError: bad"

      log = capture_log([level: :warning], fn -> PythonCapture.handle_line(line, @ctx) end)
      assert length(String.split(log, "[error]")) == 2
      assert log =~ "tool failed\nTraceback (most recent call last):\n  File"
      refute log =~ "\u2028"
    end

    test "malformed lines are counted by reason and never raise" do
      before = PythonCapture.stats()

      assert PythonCapture.handle_line("TELEMETRY:{", @ctx) == {:malformed, :invalid_json}

      assert PythonCapture.handle_line(~s(TELEMETRY:{"event":"python.nope"}), @ctx) ==
               {:malformed, :unknown_event}

      after_ = PythonCapture.stats()
      assert after_.malformed - before.malformed == 2
      assert after_.malformed_by_reason.invalid_json >= 1
      assert after_.malformed_by_reason.unknown_event >= 1
      refute_receive {_, _, _, _}
    end
  end

  describe "a real Python process with the stderr backend" do
    test "its spans arrive as :telemetry events; logs and bad lines do not" do
      before = PythonCapture.stats()

      {:ok, pid} =
        PythonCapture.start_link(
          executable: Snakepit.Python.executable(),
          args: [
            PythonHelpers.script("examples/stderr_emitter.py"),
            "--count",
            "2",
            "--delay-ms",
            "1"
          ],
          env: Snakepit.Python.env(PYTHON_SNAKEPIT_TELEMETRY: "stderr"),
          context: %{worker_id: "py_1", pool_name: :capture_test},
          notify: self()
        )

      assert_receive {:python_capture_exit, ^pid, status}, 20_000
      assert status == 0

      assert_received {[:snakepit, :python, :tool, :execution, :start], _, %{system_time: _},
                       %{worker_id: "py_1", python_pid: os_pid, correlation_id: corr}}

      assert is_integer(os_pid) and os_pid > 0
      assert is_binary(corr)

      assert_received {[:snakepit, :python, :tool, :execution, :stop], _, %{duration: d},
                       %{correlation_id: ^corr}}

      assert is_integer(d) and d >= 0

      assert_received {[:snakepit, :python, :tool, :execution, :exception], _, %{duration: _},
                       %{error_type: _, error_message: _}}

      assert_received {[:snakepit, :python, :tool, :result_size], _, %{bytes: _}, _}

      stats = PythonCapture.stats()
      assert stats.events > before.events
      assert stats.log_lines > before.log_lines
      assert stats.malformed - before.malformed >= 2
    end
  end
end
