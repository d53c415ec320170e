defmodule Snakepit.Telemetry.AtomSafetyTest do
  # Not async: the atom count is global, so nothing else may run meanwhile.
  use ExUnit.Case, async: false

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
end
