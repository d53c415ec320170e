defmodule Snakepit.Telemetry.AtomSafetyTest do
  # Not async: the atom count is global, so nothing else may run meanwhile.
  use ExUnit.Case, async: false

  import Snakepit.Test.Eventually, only: [eventually: 2]

  alias Snakepit.GRPCWorker
  alias Snakepit.Telemetry.{Native, Naming, PythonCapture, SafeMetadata}

  @ctx %{worker_id: "w", pool_name: :p}

  # Runs `fun` once to load every module it touches, then checks that running
  # it on `n` fresh inputs adds no atom.
  defp assert_no_new_atoms(n, fun) do
    fun.(0)
    before = :erlang.system_info(:atom_count)
    for i <- 1..n, do: fun.(i)
    assert :erlang.system_info(:atom_count) == before
  end

  test "Naming never makes atoms from names or keys" do
    assert_no_new_atoms(2_000, fn i ->
      Naming.from_parts("python.never_seen_#{i}.x")
      Naming.from_parts(["tool", "unseen_#{i}"])
      Naming.measurement_key("never_seen_key_#{i}")
      Naming.metadata_key("never_seen_meta_#{i}")
    end)
  end

  test "SafeMetadata never makes atoms from keys" do
    assert_no_new_atoms(200, fn i ->
      SafeMetadata.sanitize(Map.new(1..10, &{"unseen_meta_key_#{i}_#{&1}", &1}))
    end)
  end

  test "the NIF never makes atoms from event names, measurement or metadata keys" do
    assert_no_new_atoms(5_000, fn i ->
      name = Enum.at(["python.call.start", "python.x#{i}", "tool.y#{i}.stop"], rem(i, 3))

      Native.stderr_parse_line(
        ~s(TELEMETRY:{"event":"#{name}","measurements":{"k#{i}":#{i}},"metadata":{"m#{i}":"v"}})
      )
    end)
  end

  test "PythonCapture never makes atoms, even for emitted events" do
    ExUnit.CaptureLog.capture_log(fn ->
      assert_no_new_atoms(1_000, fn i ->
        PythonCapture.handle_line(
          ~s(TELEMETRY:{"event":"python.call.start","measurements":{"u#{i}":1},"metadata":{"v#{i}":"x"}}),
          @ctx
        )

        PythonCapture.handle_line(~s(TELEMETRY:{"event":"python.z#{i}"}), @ctx)
      end)
    end)
  end

  # Issue 11, class 9: before the fix Pool.checkout/1 made an atom of every
  # name it was given (Module.concat), 1000 atoms for 1000 strings.
  test "no public function makes an atom from its arguments" do
    {:ok, channel} = Snakepit.GRPC.Client.connect("127.0.0.1:1", connect_timeout_ms: 50)
    alias Snakepit.{GRPC.Client, Pool}
    alias Snakepit.Telemetry.{Control, GrpcStream}

    assert_no_new_atoms(1_000, fn i ->
      s = "fresh_#{i}"
      Pool.checkout(s)
      Pool.checkout(:no_pool, [{s, s}])
      Pool.execute(s, s, %{s => s}, [{s, s}])
      Pool.checkin(s, self())
      Pool.workers(s)
      Pool.status(s)
      Pool.stop(s)
      Pool.start_link(name: s)
      Pool.start_link([{s, 1}])
      GRPCWorker.info(s)
      GRPCWorker.execute(self(), s, %{s => s})
      GrpcStream.register_worker("#{s}:1", %{worker_id: s, pool_name: s}, [{s, 1}])
      GrpcStream.register_worker("127.0.0.1:1", %{"worker_id" => s})
      GrpcStream.stats(s)
      GrpcStream.unregister_worker(s)
      GrpcStream.update_sampling(s, 0.5, [s])
      GrpcStream.update_filter(s, [{s, [s]}])
      GrpcStream.toggle(s, s)
      GrpcStream.settings(s)
      GrpcStream.update_filter({:pool, s}, deny: [s, "snakepit." <> s])
      GrpcStream.update_sampling({:pool, s}, 0.5, [s])
      GrpcStream.settings({:pool, s})
      GrpcStream.clear_settings({:pool, s})
      GrpcStream.clear_settings(s)
      Control.patterns(["snakepit.python." <> s])
      Control.filter([{s, []}])
      Client.connect("#{s}:1")
      Client.execute_tool(channel, s, %{s => %{s => [s]}}, [{:metadata, %{s => s}}])
      ExUnit.CaptureLog.capture_log(fn -> PythonCapture.handle_line(s, %{worker_id: s}) end)
      Naming.describe(s)
      SafeMetadata.merge(%{s => s}, [{s, s}])
    end)
  end

  describe "100,000 events with random names and keys from real Python workers" do
    @tag timeout: 120_000
    test "through gRPC and through stderr, create no atom" do
      grpc =
        start_supervised!(
          {Snakepit.GRPCWorker, id: "atoms_grpc", args: ["--sample-interval-ms", "0"]},
          id: :grpc
        )

      stderr =
        start_supervised!(
          {Snakepit.GRPCWorker,
           id: "atoms_stderr",
           args: ["--sample-interval-ms", "0"],
           env: [{"PYTHON_SNAKEPIT_TELEMETRY", "stderr"}]},
          id: :stderr
        )

      # Warm up both paths so every module involved is loaded.
      random_events(grpc, stderr, 1_000, 1)
      before = :erlang.system_info(:atom_count)
      {grpc_seen, stderr_seen} = random_events(grpc, stderr, 50_000, 2)
      assert :erlang.system_info(:atom_count) == before

      # Most events made it through (the rest were dropped at the worker's
      # bounded queue, and counted): the test exercised real traffic.
      assert grpc_seen > 25_000
      # (plus the few events of the tool calls themselves)
      assert stderr_seen >= 50_000
    end
  end

  # Emits `n` random events on each worker; returns how many the gRPC stream
  # received (delivered or rejected) and how many stderr lines were handled.
  defp random_events(grpc, stderr, n, seed) do
    capture_before = PythonCapture.stats()

    {:ok, _} =
      GRPCWorker.execute(grpc, "emit_random", %{count: n, seed: seed, pause_ms: 2},
        timeout: 60_000
      )

    {:ok, _} = GRPCWorker.execute(stderr, "emit_random", %{count: n, seed: seed}, timeout: 60_000)

    grpc_stats =
      wait_until(fn ->
        {:ok, s} = Snakepit.Telemetry.GrpcStream.stats("atoms_grpc")

        if s.python_emitted > 0 and s.events_received + s.python_dropped >= s.python_emitted,
          do: s
      end)

    handled =
      wait_until(fn ->
        now = PythonCapture.stats()
        seen = now.events + now.malformed - capture_before.events - capture_before.malformed
        if seen >= n, do: seen
      end)

    {grpc_stats.events_received, handled}
  end

  defp wait_until(fun), do: eventually(fun, tries: 600, interval: 25)
end
