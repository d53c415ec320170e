defmodule Snakepit.PoolTest do
  use ExUnit.Case, async: false

  alias Snakepit.{GRPCWorker, Pool}
  alias Snakepit.Telemetry.Naming

  import Snakepit.Test.Eventually, only: [eventually: 1]

  setup do
    events = [
      Naming.pool_event(:initialized),
      Naming.pool_event(:status),
      Naming.worker_event(:spawned)
    ]

    ref = :telemetry_test.attach_event_handlers(self(), events)
    on_exit(fn -> :telemetry.detach(ref) end)
    :ok
  end

  test "starts N workers, announces itself, lends each worker to one caller at a time" do
    {:ok, _} = Pool.start_link(name: :pool_rr, size: 2, status_interval: nil)
    on_exit(fn -> stop_quietly(:pool_rr) end)

    assert_receive {[:snakepit, :pool, :initialized], _, %{duration: _, system_time: _},
                    %{pool_name: :pool_rr, size: 2, worker_module: GRPCWorker}}

    assert_receive {[:snakepit, :pool, :status], _, %{total_workers: 2, available_workers: 2},
                    %{pool_name: :pool_rr}}

    {:ok, a} = Pool.checkout(:pool_rr)
    {:ok, b} = Pool.checkout(:pool_rr)
    assert a != b and Enum.sort([a, b]) == Enum.sort(Pool.workers(:pool_rr))
    assert {:error, :pool_timeout} = Pool.checkout(:pool_rr, checkout_timeout: 50)
    assert %{busy_workers: 2, available_workers: 0} = Pool.status(:pool_rr)
    assert :ok = Pool.checkin(:pool_rr, a)
    assert {:error, :not_checked_out} = Pool.checkin(:pool_rr, a)
    assert {:ok, ^a} = Pool.checkout(:pool_rr)

    # Only the holder checks a worker in; a holder that exits gives it back.
    assert {:error, :not_checked_out_by_caller} =
             Task.async(fn -> Pool.checkin(:pool_rr, b) end) |> Task.await()

    :ok = Pool.checkin(:pool_rr, a)
    task = Task.async(fn -> Pool.checkout(:pool_rr) end)
    assert {:ok, ^a} = Task.await(task)
    # the task exited holding a: it is free again
    assert {:ok, ^a} = Pool.checkout(:pool_rr, checkout_timeout: 1_000)

    assert {:error, :no_pool} = Pool.checkout(:no_such_pool)
    assert {:error, :no_pool} = Pool.execute(:no_such_pool, "ping")

    assert {:error, {:invalid_option, {:checkout_timeout, -1}}} =
             Pool.checkout(:pool_rr, checkout_timeout: -1)

    assert {:error, {:invalid_options, :x}} = Pool.checkout(:pool_rr, :x)
  end

  test "a pool of one: calls serialise, a third times out, status shows it, a killed worker restarts" do
    events =
      for e <- [
            [:queue, :enqueued],
            [:queue, :dequeued],
            [:queue, :timeout],
            [:worker, :restarted],
            :worker_ready
          ],
          do: Naming.pool_event(e)

    ref = :telemetry_test.attach_event_handlers(self(), events)
    on_exit(fn -> :telemetry.detach(ref) end)
    {:ok, _} = Pool.start_link(name: :pool_q, size: 1, demo_tools: true, status_interval: nil)
    on_exit(fn -> stop_quietly(:pool_q) end)
    assert_receive {[:snakepit, :pool, :worker_ready], _, _, %{worker_id: "pool_q_1"}}

    slow = fn id -> Pool.execute(:pool_q, "telemetry_demo", %{operation: id, delay_ms: 400}) end
    first = Task.async(fn -> slow.("first") end)
    eventually(fn -> Pool.status(:pool_q).busy_workers == 1 end)
    second = Task.async(fn -> slow.("second") end)
    eventually(fn -> Pool.status(:pool_q).queue_depth == 1 end)
    assert %{busy_workers: 1, queue_depth: 1, available_workers: 0} = Pool.status(:pool_q)

    assert_receive {[:snakepit, :pool, :queue, :enqueued], _, %{queue_depth: 1},
                    %{pool_name: :pool_q}}

    assert {:error, :pool_timeout} =
             Pool.execute(:pool_q, "ping", %{}, checkout_timeout: 100, correlation_id: "late")

    assert_receive {[:snakepit, :pool, :queue, :timeout], _, %{queue_time: t},
                    %{timeout_ms: 100, correlation_id: "late"}}

    assert System.convert_time_unit(t, :native, :millisecond) >= 100

    assert {:ok, %{"operation" => "first"}} = Task.await(first)
    assert {:ok, %{"operation" => "second"}} = Task.await(second)
    # The second waited for the first: it was handed the worker from the queue.
    assert_receive {[:snakepit, :pool, :queue, :dequeued], _, %{queue_time: q},
                    %{worker_id: "pool_q_1"}}

    assert System.convert_time_unit(q, :native, :millisecond) >= 200

    # Its Python process is killed: the worker restarts under its id.
    [worker] = Pool.workers(:pool_q)
    {:ok, %{python_pid: os_pid}} = GRPCWorker.info(worker)
    System.cmd("kill", ["-KILL", "#{os_pid}"])

    assert_receive {[:snakepit, :pool, :worker, :restarted], _, %{downtime: _, restart_count: 1},
                    %{worker_id: "pool_q_1", previous_pid: ^worker, new_pid: new}},
                   15_000

    assert [^new] = Pool.workers(:pool_q)
    assert {:ok, _} = Pool.execute(:pool_q, "ping")
  end

  test "a pool whose worker cannot start: its error, one error entry" do
    Process.flag(:trap_exit, true)

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        assert {:error, {:python_exited_before_ready, 2}} =
                 Pool.start_link(
                   name: :pool_bad,
                   size: 1,
                   worker_args: ["--no-such-flag"],
                   status_interval: nil
                 )
      end)

    assert length(String.split(log, "[error]")) == 2, log
    assert log =~ "unrecognized arguments: --no-such-flag"
  end

  test "after the pool stops, none of its Python processes is alive (checked against the OS)" do
    {:ok, _} = Pool.start_link(name: :pool_stop, size: 2, status_interval: nil)
    %{python_pids: pids} = Pool.status(:pool_stop)
    assert length(pids) == 2
    assert Enum.all?(pids, &os_alive?/1)
    :ok = Pool.stop(:pool_stop)
    refute Enum.any?(pids, &os_alive?/1)
  end

  test "a crashed worker process does not leave its Python process behind" do
    {:ok, _} = Pool.start_link(name: :pool_crash, size: 1, status_interval: nil)
    on_exit(fn -> stop_quietly(:pool_crash) end)
    [worker] = Pool.workers(:pool_crash)
    {:ok, %{python_pid: os_pid}} = GRPCWorker.info(worker)
    Process.exit(worker, :kill)
    # A killed worker runs no terminate: the Python side notices its stdin
    # closing and exits by itself.
    eventually(fn -> not os_alive?(os_pid) end)
  end

  defp stop_quietly(pool) do
    Pool.stop(pool)
  catch
    :exit, _ -> :ok
  end

  defp os_alive?(pid),
    do: Snakepit.OSProcess.signal(pid, "0")
end
