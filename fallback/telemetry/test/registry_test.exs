defmodule TelemetryFallback.RegistryTest do
  use TelemetryFallback.Case, async: false

  describe "attach/4" do
    test "returns :ok and the handler is listed", %{id: id} do
      fun = &Handlers.forward/4
      assert :ok = :telemetry.attach(id, [:reg, :a], fun, %{pid: self()})

      assert [%{id: ^id, event_name: [:reg, :a], function: ^fun, config: %{pid: pid}}] =
               :telemetry.list_handlers([:reg, :a])

      assert pid == self()
    end

    test "a duplicate ID returns {:error, :already_exists}", %{id: id} do
      assert :ok = :telemetry.attach(id, [:reg, :dup], &Handlers.forward/4, %{pid: self()})

      assert {:error, :already_exists} =
               :telemetry.attach(id, [:reg, :dup], &Handlers.forward/4, %{pid: self()})

      assert {:error, :already_exists} =
               :telemetry.attach(id, [:reg, :other], &Handlers.forward/4, %{pid: self()})

      assert {:error, :already_exists} =
               :telemetry.attach_many(id, [[:reg, :x], [:reg, :y]], &Handlers.forward/4, nil)

      assert [_] = :telemetry.list_handlers([:reg, :dup])
      assert [] = :telemetry.list_handlers([:reg, :other])
      assert [] = :telemetry.list_handlers([:reg, :x])
    end

    test "any term can be a handler ID" do
      for id <- ["string", :atom, {:tuple, 1}, 42, make_ref()] do
        assert :ok = :telemetry.attach(id, [:reg, :ids], &Handlers.forward/4, nil)
        assert :ok = :telemetry.detach(id)
      end
    end

    test "event names must be non-empty lists of atoms", %{id: id} do
      fun = &Handlers.forward/4

      assert_raise ArgumentError, fn -> :telemetry.attach(id, [], fun, nil) end
      assert_raise ArgumentError, fn -> :telemetry.attach(id, :not_a_list, fun, nil) end
      assert_raise ArgumentError, fn -> :telemetry.attach(id, ["string", :event], fun, nil) end
      assert_raise ArgumentError, fn -> :telemetry.attach(id, [:ok, 1], fun, nil) end
      assert_raise ArgumentError, fn -> :telemetry.attach_many(id, :not_a_list, fun, nil) end
      assert_raise ArgumentError, fn -> :telemetry.attach_many(id, [[:ok], []], fun, nil) end
      assert_raise ArgumentError, fn -> :telemetry.attach_many(id, [[:ok], [1]], fun, nil) end

      assert :telemetry.list_handlers([]) |> Enum.filter(&(&1.id == id)) == []
    end

    test "the handler function must have arity 4", %{id: id} do
      assert_raise FunctionClauseError, fn ->
        :telemetry.attach(id, [:reg, :arity], fn _, _, _ -> :ok end, nil)
      end

      assert_raise FunctionClauseError, fn ->
        :telemetry.attach_many(id, [[:reg, :arity]], :not_a_fun, nil)
      end

      assert [] = :telemetry.list_handlers([:reg, :arity])
    end

    test "attaching a local function logs an info report", %{id: id} do
      log =
        capture_log([level: :info], fn ->
          assert :ok = :telemetry.attach(id, [:reg, :local], fn _, _, _, _ -> :ok end, nil)
        end)

      assert log =~ "local function"
      assert log =~ inspect(id)
    end

    test "attaching an external function logs nothing", %{id: id} do
      log =
        capture_log([level: :debug], fn ->
          assert :ok = :telemetry.attach(id, [:reg, :external], &Handlers.forward/4, nil)
        end)

      assert log == ""
    end
  end

  describe "attach_many/4" do
    test "attaches one handler to several events, listed once per event", %{id: id} do
      events = [[:many, :one], [:many, :two], [:many, :three]]
      assert :ok = :telemetry.attach_many(id, events, &Handlers.forward/4, %{pid: self()})

      for event <- events do
        assert [%{id: ^id, event_name: ^event}] = :telemetry.list_handlers(event)
        :telemetry.execute(event, %{n: 1}, %{})
        assert_received {:event, ^event, %{n: 1}, %{}, _, _}
      end

      assert length(:telemetry.list_handlers([:many])) == 3
    end

    test "detach/1 removes the handler from every event", %{id: id} do
      events = [[:many, :d1], [:many, :d2]]
      assert :ok = :telemetry.attach_many(id, events, &Handlers.forward/4, %{pid: self()})
      assert :ok = :telemetry.detach(id)

      for event <- events do
        assert [] = :telemetry.list_handlers(event)
        :telemetry.execute(event, %{}, %{})
      end

      refute_received {:event, _, _, _, _, _}
    end
  end

  describe "detach/1" do
    test "returns :ok, then {:error, :not_found}", %{id: id} do
      assert :ok = :telemetry.attach(id, [:reg, :detach], &Handlers.forward/4, %{pid: self()})
      assert :ok = :telemetry.detach(id)
      assert {:error, :not_found} = :telemetry.detach(id)
      assert {:error, :not_found} = :telemetry.detach({:never, :attached})
    end

    test "a detached handler is no longer called and its ID can be reused", %{id: id} do
      assert :ok = :telemetry.attach(id, [:reg, :gone], &Handlers.forward/4, %{pid: self()})
      assert :ok = :telemetry.detach(id)

      :telemetry.execute([:reg, :gone], %{}, %{})
      refute_received {:event, _, _, _, _, _}

      assert :ok = :telemetry.attach(id, [:reg, :back], &Handlers.forward/4, %{pid: self()})
      :telemetry.execute([:reg, :back], %{}, %{})
      assert_received {:event, [:reg, :back], _, _, _, _}
    end

    test "detaching one handler leaves the others on the same event", %{id: id} do
      other = {:other, make_ref()}
      on_exit(fn -> :telemetry.detach(other) end)

      :ok = :telemetry.attach(id, [:reg, :shared], &Handlers.forward/4, %{pid: self(), n: 1})
      :ok = :telemetry.attach(other, [:reg, :shared], &Handlers.forward/4, %{pid: self(), n: 2})
      :ok = :telemetry.detach(id)

      :telemetry.execute([:reg, :shared], %{}, %{})
      assert_received {:event, [:reg, :shared], _, _, %{n: 2}, _}
      refute_received {:event, [:reg, :shared], _, _, %{n: 1}, _}
    end
  end

  describe "list_handlers/1" do
    setup %{id: id} do
      fun = &Handlers.forward/4
      :ok = :telemetry.attach(id, [:lh, :test, :event], fun, %{pid: self()})
      {:ok, fun: fun}
    end

    test "matches every prefix of the event name", %{id: id, fun: fun} do
      for prefix <- [[], [:lh], [:lh, :test], [:lh, :test, :event]] do
        handlers = :telemetry.list_handlers(prefix)

        assert %{id: ^id, event_name: [:lh, :test, :event], function: ^fun, config: _} =
                 Enum.find(handlers, &(&1.id == id))
      end
    end

    test "does not match longer names, other names or partial atoms" do
      assert [] = :telemetry.list_handlers([:lh, :test, :event, :more])
      assert [] = :telemetry.list_handlers([:lh, :other])
      assert [] = :telemetry.list_handlers([:l])
      assert [] = :telemetry.list_handlers([:test])
    end

    test "returns maps with exactly the documented keys", %{id: id} do
      [handler] = :telemetry.list_handlers([:lh, :test])
      assert handler.id == id
      assert handler |> Map.keys() |> Enum.sort() == [:config, :event_name, :function, :id]
    end

    test "lists handlers from different IDs sharing a prefix", %{id: id} do
      other = {:other, make_ref()}
      on_exit(fn -> :telemetry.detach(other) end)
      :ok = :telemetry.attach(other, [:lh, :sibling], &Handlers.forward/4, nil)

      ids = :telemetry.list_handlers([:lh]) |> Enum.map(& &1.id) |> Enum.sort()
      assert ids == Enum.sort([id, other])
    end

    test "the prefix must be a list of atoms" do
      assert_raise ArgumentError, fn -> :telemetry.list_handlers(:lh) end
      assert_raise ArgumentError, fn -> :telemetry.list_handlers(["lh"]) end
    end
  end
end
