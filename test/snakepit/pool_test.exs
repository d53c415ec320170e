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

  test "starts N workers, announces itself, checks out round robin" do
    {:ok, _} = Pool.start_link(name: :pool_rr, size: 2, status_interval: nil)
    on_exit(fn -> stop_quietly(:pool_rr) end)

    assert_receive {[:snakepit, :pool, :initialized], _, %{duration: _, system_time: _},
                    %{pool_name: :pool_rr, size: 2, worker_module: GRPCWorker}}

    assert_receive {[:snakepit, :pool, :status], _, %{total_workers: 2, available_workers: 2},
                    %{pool_name: :pool_rr}}

    picks = for _ <- 1..4, do: elem(Pool.checkout(:pool_rr), 1)
    assert length(Enum.uniq(picks)) == 2
    assert Enum.all?(picks, &(&1 in Pool.workers(:pool_rr)))
    assert {:error, :no_pool} = Pool.checkout(:no_such_pool)
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
