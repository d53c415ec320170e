defmodule TelemetryFallback.PersistTest do
  # telemetry:persist/0 (upstream 1.4.0): dispatch from persistent_term, with
  # attach and detach still working afterwards.
  use TelemetryFallback.Case, async: false

  @key {:telemetry, :persisted_handlers}

  setup do
    # Each test starts from a fresh, unpersisted registry.
    capture_log(fn -> :ok = Application.stop(:telemetry) end)
    {:ok, _} = Application.ensure_all_started(:telemetry)
    on_exit(fn -> {:ok, _} = Application.ensure_all_started(:telemetry) end)
    :ok
  end

  test "after persist/0, execute dispatches from persistent_term", %{id: id} do
    :ok = :telemetry.attach(id, [:p, :a], &Handlers.forward/4, %{pid: self()})
    assert :persistent_term.get(@key, :none) == :none
    assert :ok = :telemetry.persist()
    assert %{[:p, :a] => [_]} = :persistent_term.get(@key)
    assert :ok = :telemetry.persist()

    :ok = :telemetry.execute([:p, :a], %{n: 1}, %{})
    assert_received {:event, [:p, :a], %{n: 1}, %{}, _, _}
    :ok = :telemetry.execute([:p, :unknown], %{n: 1}, %{})
    refute_received {:event, [:p, :unknown], _, _, _, _}
  end

  test "attach and detach after persist/0 take effect", %{id: id} do
    :ok = :telemetry.persist()
    :ok = :telemetry.attach(id, [:p, :late], &Handlers.forward/4, %{pid: self()})

    assert {:error, :already_exists} =
             :telemetry.attach(id, [:p, :other], &Handlers.forward/4, nil)

    :ok = :telemetry.execute([:p, :late], %{n: 2}, %{})
    assert_received {:event, [:p, :late], %{n: 2}, _, _, _}
    assert [%{id: ^id}] = :telemetry.list_handlers([:p])

    :ok = :telemetry.detach(id)
    assert {:error, :not_found} = :telemetry.detach(id)
    :ok = :telemetry.execute([:p, :late], %{n: 3}, %{})
    refute_received {:event, [:p, :late], _, _, _, _}
    assert :persistent_term.get(@key) == %{}
  end

  test "a failing handler is detached after persist/0 too", %{id: id} do
    :ok = :telemetry.attach(id, [:p, :fail], &Handlers.raise_error/4, nil)
    :ok = :telemetry.persist()
    capture_log(fn -> :ok = :telemetry.execute([:p, :fail], %{}, %{}) end)
    assert [] = :telemetry.list_handlers([:p, :fail])
    assert :persistent_term.get(@key) == %{}
  end

  test "stopping the application erases the persisted handlers", %{id: id} do
    :ok = :telemetry.attach(id, [:p, :stop], &Handlers.forward/4, %{pid: self()})
    :ok = :telemetry.persist()
    capture_log(fn -> :ok = Application.stop(:telemetry) end)
    assert :persistent_term.get(@key, :none) == :none

    log = capture_log(fn -> assert :ok = :telemetry.execute([:p, :stop], %{}, %{}) end)
    assert log =~ "Failed to lookup telemetry handlers"
    refute_received {:event, [:p, :stop], _, _, _, _}
    assert :ok = :telemetry.persist()
  end
end
