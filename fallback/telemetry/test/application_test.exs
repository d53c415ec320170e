defmodule TelemetryFallback.ApplicationTest do
  use TelemetryFallback.Case, async: false

  test "the application runs a supervisor owning the handler table process" do
    assert {:ok, ~c"1.4.1"} = :application.get_key(:telemetry, :vsn)
    assert {:ok, {:telemetry_app, []}} = :application.get_key(:telemetry, :mod)

    sup = Process.whereis(:telemetry_sup)
    owner = Process.whereis(:telemetry_handler_table)
    assert is_pid(sup) and is_pid(owner)

    assert [{:telemetry_handler_table, ^owner, :worker, _}] = Supervisor.which_children(sup)
  end

  test "the ETS table is named, owned by the server and read-optimised" do
    info = :ets.info(:telemetry_handler_table)
    assert info[:owner] == Process.whereis(:telemetry_handler_table)
    assert info[:named_table] == true
    assert info[:protection] in [:protected, :public]
    assert info[:read_concurrency] == true
  end

  test "handlers are readable from any process and writes go through the server", %{id: id} do
    :ok = :telemetry.attach(id, [:app, :concurrent], &Handlers.forward/4, %{pid: self()})

    1..20
    |> Enum.map(fn i ->
      Task.async(fn -> :telemetry.execute([:app, :concurrent], %{i: i}, %{}) end)
    end)
    |> Enum.each(&Task.await/1)

    for i <- 1..20, do: assert_received({:event, [:app, :concurrent], %{i: ^i}, _, _, _})
  end

  test "concurrent attaches with the same ID: exactly one wins" do
    id = {:race, make_ref()}
    on_exit(fn -> :telemetry.detach(id) end)

    results =
      1..20
      |> Enum.map(fn _ ->
        Task.async(fn -> :telemetry.attach(id, [:app, :race], &Handlers.forward/4, nil) end)
      end)
      |> Enum.map(&Task.await/1)

    assert Enum.count(results, &(&1 == :ok)) == 1
    assert Enum.count(results, &(&1 == {:error, :already_exists})) == 19
  end

  test "execute/3 and list_handlers/1 do not crash when the application is stopped" do
    capture_log(fn -> :ok = Application.stop(:telemetry) end)

    try do
      log =
        capture_log(fn ->
          assert :ok = :telemetry.execute([:app, :stopped], %{}, %{})
          assert [] = :telemetry.list_handlers([])
        end)

      assert log =~ "Failed to lookup telemetry handlers"
    after
      {:ok, _} = Application.ensure_all_started(:telemetry)
    end

    assert :ok = :telemetry.execute([:app, :restarted], %{}, %{})
  end

  test "restarting the application starts with an empty registry", %{id: id} do
    :ok = :telemetry.attach(id, [:app, :restart], &Handlers.forward/4, nil)
    capture_log(fn -> :ok = Application.stop(:telemetry) end)
    {:ok, _} = Application.ensure_all_started(:telemetry)
    assert [] = :telemetry.list_handlers([:app, :restart])
  end
end
