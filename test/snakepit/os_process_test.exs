defmodule Snakepit.OSProcessTest do
  use ExUnit.Case, async: true

  alias Snakepit.OSProcess

  defp sh(script, opts \\ []), do: OSProcess.open("/bin/sh", ["-c", script], opts)

  defp lines(proc, acc \\ []) do
    port = proc.port

    receive do
      {^port, {:data, data}} ->
        case OSProcess.feed(proc, data) do
          {:line, line, proc} -> lines(proc, [line | acc])
          {:too_long, proc} -> lines(proc, [:too_long | acc])
          {:more, proc} -> lines(proc, acc)
        end

      {^port, {:exit_status, status}} ->
        {Enum.reverse(acc), status}
    after
      5_000 -> flunk("no exit")
    end
  end

  test "lines are rebuilt from the port's pieces, and a line over the bound is reported, not kept" do
    proc = sh("echo one; printf '%0300d\\n' 0; printf '%050d\\n' 0; echo two", max_line: 100)
    assert {["one", :too_long, String.duplicate("0", 50), "two"], 0} == lines(proc)

    proc = sh("printf '%0150d\\n' 0", max_line: 200)
    assert {[line], 0} = lines(proc)
    assert line == String.duplicate("0", 150)
  end

  test "a line split by a small port buffer is whole again" do
    proc = sh("printf '%0250d\\n' 0", max_line: 256)
    assert {[line], 0} = lines(%{proc | max_line: 256})
    assert byte_size(line) == 250
  end

  test "stdin is written first; await_line hands other lines to the callback" do
    test = self()
    proc = sh("read secret; echo before; echo \"READY $secret\"; sleep 5", stdin: "s3cret\n")
    assert {:ok, "s3cret", proc} = OSProcess.await_line(proc, "READY ", 5_000, &send(test, &1))
    assert_received "before"
    refute String.contains?(File.read!("/proc/#{proc.os_pid}/cmdline"), "s3cret")
    assert :ok = OSProcess.stop(proc, 1_000)
    refute OSProcess.signal(proc.os_pid, "0")
  end

  test "await_line reports an exit or a timeout" do
    assert {:exit, 3, _} = OSProcess.await_line(sh("echo x; exit 3"), "READY", 5_000, & &1)
    proc = sh("sleep 5")
    assert {:timeout, proc} = OSProcess.await_line(proc, "READY", 50, & &1)
    OSProcess.stop(proc, 1_000)
  end

  test "spawn_owned: ready, exit before ready, timeout, a program that cannot start" do
    # `exec`: the KILL below must end the process that holds the port's
    # pipe. With a plain `sleep 5` the shell died but its child kept the
    # pipe open, the exit status came only once it closed (5 s), and the
    # owner's 5 s wait failed a run under a busy core.
    assert {:ok, %{os_pid: pid, owner: owner, ready: "7"}} =
             OSProcess.spawn_owned(
               "/bin/sh",
               ["-c", "echo noise; echo 'UP 7'; exec sleep 5"],
               "UP "
             )

    assert OSProcess.signal(pid, "0")
    OSProcess.signal(pid, "KILL")
    ref = Process.monitor(owner)
    assert_receive {:DOWN, ^ref, _, _, _}, 5_000

    assert {:error, {:exited, 2, ["a", "b"]}} =
             OSProcess.spawn_owned("/bin/sh", ["-c", "echo a; echo b; exit 2"], "UP ")

    assert {:error, :timeout} =
             OSProcess.spawn_owned("/bin/sh", ["-c", "sleep 5"], "UP ", timeout: 100)

    assert {:error, {:spawn_failed, _}} = OSProcess.spawn_owned("/nonexistent/prog", [], "UP ")
  end

  test "stop: SIGTERM first, SIGKILL for a process that ignores it" do
    proc = sh("trap '' TERM; echo up; while :; do sleep 0.05; done")
    assert {:ok, "", proc} = OSProcess.await_line(proc, "up", 5_000, & &1)
    started = System.monotonic_time(:millisecond)
    assert :ok = OSProcess.stop(proc, 200)
    assert System.monotonic_time(:millisecond) - started >= 200
    Process.sleep(100)
    refute OSProcess.signal(proc.os_pid, "0")
  end
end
