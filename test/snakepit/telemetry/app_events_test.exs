defmodule Snakepit.Telemetry.AppEventsTest do
  # Application-defined events (config/config.exs declares test_app.prediction
  # with :score, :customer_id and the extra key :tenant, as an application
  # would), through a real worker, the stderr path, Naming and the start.
  use ExUnit.Case, async: false

  alias Snakepit.GRPCWorker
  alias Snakepit.Telemetry.{AppEvents, Naming, PythonCapture}

  @event [:test_app, :prediction]

  test "a Python tool's application event arrives with atom keys for its declared metadata" do
    ref = :telemetry_test.attach_event_handlers(self(), [@event])
    on_exit(fn -> :telemetry.detach(ref) end)
    id = "app-ev-#{System.unique_integer([:positive])}"
    w = start_supervised!({GRPCWorker, id: id, pool_name: :app_events})

    {:ok, _} =
      GRPCWorker.execute(w, "emit_events", %{
        event: "test_app.prediction",
        count: 1,
        measurements: %{score: 0.9},
        metadata: %{customer_id: "c1", tenant: "t1", undeclared_key: "x"}
      })

    assert_receive {@event, ^ref, %{score: 0.9}, metadata}, 5_000
    assert %{customer_id: "c1", tenant: "t1", worker_id: ^id, pool_name: :app_events} = metadata
    assert metadata["undeclared_key"] == "x"
  end

  test "the stderr path, Naming and describe know the application's events" do
    ref = :telemetry_test.attach_event_handlers(self(), [@event])
    on_exit(fn -> :telemetry.detach(ref) end)

    line =
      ~s(TELEMETRY:{"event":"test_app.prediction","measurements":{"score":2},"metadata":{"customer_id":"c2"}})

    assert PythonCapture.handle_line(line, %{worker_id: "w"}) == :event
    assert_receive {@event, ^ref, %{score: 2}, %{customer_id: "c2"}}

    assert {:ok, @event} = Naming.from_parts("test_app.prediction")
    assert {:ok, @event} = Naming.from_parts(["test_app", "prediction"])
    assert @event in Naming.events() and @event in Naming.python_events()
    assert Naming.known_event?(@event)

    assert %{measurements: [:score], python_name: "test_app.prediction"} =
             doc = Naming.describe("test_app.prediction")

    assert :customer_id in doc.metadata and :worker_id in doc.metadata
    assert Naming.metadata_key("tenant") == :tenant
    # Its Python and Elixir names are the same text: patterns need no expansion.
    assert {:ok, ["test_app.*"]} = Snakepit.Telemetry.Control.patterns(["test_app.*"])
  end

  test "unknown names and keys make no atom, with the extension installed" do
    feed = fn range ->
      for i <- range do
        name = "test_app.fresh_#{i}"

        line =
          ~s(TELEMETRY:{"event":"#{name}","measurements":{"m_#{i}":1},"metadata":{"k_#{i}":"v"}})

        ExUnit.CaptureLog.capture_log(fn -> PythonCapture.handle_line(line, %{worker_id: "w"}) end)

        ok =
          ~s(TELEMETRY:{"event":"test_app.prediction","measurements":{"m_#{i}":1},"metadata":{"k_#{i}":"v"}})

        PythonCapture.handle_line(ok, %{worker_id: "w"})
        Naming.metadata_key("k_#{i}")
        Naming.from_parts(name)
      end
    end

    # Once first: the code it runs is loaded (loading a module makes atoms).
    feed.(0..0)
    before = :erlang.system_info(:atom_count)
    feed.(1..1_000)
    assert :erlang.system_info(:atom_count) == before
  end

  test "mix snakepit.events documents the application's events beside the library's" do
    out = ExUnit.CaptureIO.capture_io(fn -> Mix.Tasks.Snakepit.Events.run([]) end)
    assert out =~ "### `[:test_app, :prediction]`" and out =~ "Python name: `test_app.prediction`"
    assert out =~ "### `[:snakepit, :python, :call, :stop]`"

    only =
      ExUnit.CaptureIO.capture_io(fn -> Mix.Tasks.Snakepit.Events.run(["--application-only"]) end)

    assert only =~ "test_app.prediction" and not (only =~ ":snakepit, :python, :call")
  end

  test "bad definitions are refused with the reason" do
    for {events, why} <- [
          {[[python_name: "tool.result_size", event: [:x, :y]]], "already in the catalog"},
          {[[python_name: "a.b", event: [:snakepit, :python, :mine]]], "snakepit prefix"},
          {[[python_name: "nodots", event: [:x, :y]]], "parts"},
          {[[python_name: "a.b", event: [:x, :y], metadata: [:"Bad Key"]]], "metadata key"},
          {[[python_name: "a.b", event: []]], ":event must be"},
          {[[python_name: :a, event: [:x]]], ":python_name must be"},
          {[[python_name: "a.b", event: [:x], colour: :red]], "unknown option"},
          {[:not_a_keyword], "keyword list"},
          {:not_a_list, "must be a list"}
        ] do
      assert {:error, {:invalid_event_definition, reason}} = AppEvents.install(events, [], [])
      assert inspect(reason) =~ why, inspect(reason)
    end

    assert {:error, {:invalid_event_definition, _}} = AppEvents.install([], ["string"], [])
    # A second, different extension in a running VM is refused; the first stays.
    assert {:error, {:invalid_event_definition, reason}} =
             AppEvents.install([[python_name: "other.app", event: [:other, :app]]], [], [])

    assert reason =~ "installed already"
    assert {:ok, @event} = Naming.from_parts("test_app.prediction")
  end

  test "a bad definition stops the application at start with a clear error" do
    ebin = Path.wildcard(Path.join(Mix.Project.build_path(), "lib/*/ebin"))

    script = """
    Application.put_env(:snakepit_telemetry, :events, [[python_name: "tool.result_size", event: [:x, :y]]])
    IO.puts(inspect(Application.ensure_all_started(:snakepit_telemetry), width: :infinity))
    """

    {out, 0} =
      System.cmd("elixir", Enum.flat_map(ebin, &["-pa", &1]) ++ ["-e", script],
        stderr_to_stdout: true
      )

    assert out =~ "{:error, {:snakepit_telemetry,"
    assert out =~ "invalid_event_definition"
    assert out =~ ~s(event \\"tool.result_size\\" is already in the catalog)
  end
end
