defmodule TelemetryFallback.ExecuteTest do
  use TelemetryFallback.Case, async: false

  @failure_event [:telemetry, :handler, :failure]

  describe "execute/3" do
    test "calls the handler with name, measurements, metadata and config", %{id: id} do
      config = %{pid: self(), extra: :config}
      :ok = :telemetry.attach(id, [:ex, :basic], &Handlers.forward/4, config)

      assert :ok = :telemetry.execute([:ex, :basic], %{latency: 3}, %{some: :meta})
      assert_received {:event, [:ex, :basic], %{latency: 3}, %{some: :meta}, ^config, _}
    end

    test "runs handlers in the calling process", %{id: id} do
      test_pid = self()
      :ok = :telemetry.attach(id, [:ex, :caller], &Handlers.forward/4, %{pid: test_pid})

      :telemetry.execute([:ex, :caller], %{}, %{})
      assert_received {:event, _, _, _, _, ^test_pid}

      task = Task.async(fn -> :telemetry.execute([:ex, :caller], %{}, %{}) end)
      Task.await(task)
      task_pid = task.pid
      assert_received {:event, _, _, _, _, ^task_pid}
    end

    test "calls every handler attached to the event", %{id: id} do
      other = {:other, make_ref()}
      on_exit(fn -> :telemetry.detach(other) end)
      :ok = :telemetry.attach(id, [:ex, :two], &Handlers.forward/4, %{pid: self(), n: 1})
      :ok = :telemetry.attach(other, [:ex, :two], &Handlers.forward/4, %{pid: self(), n: 2})

      :telemetry.execute([:ex, :two], %{}, %{})
      assert_received {:event, [:ex, :two], _, _, %{n: 1}, _}
      assert_received {:event, [:ex, :two], _, _, %{n: 2}, _}
    end

    test "only exact event names match (not prefixes, not longer names)", %{id: id} do
      :ok = :telemetry.attach(id, [:ex, :exact, :name], &Handlers.forward/4, %{pid: self()})

      :telemetry.execute([:ex, :exact], %{}, %{})
      :telemetry.execute([:ex, :exact, :name, :longer], %{}, %{})
      :telemetry.execute([:ex], %{}, %{})
      refute_received {:event, _, _, _, _, _}

      :telemetry.execute([:ex, :exact, :name], %{}, %{})
      assert_received {:event, [:ex, :exact, :name], _, _, _, _}
    end

    test "returns :ok when no handler is attached" do
      assert :ok = :telemetry.execute([:ex, :nobody, :listens], %{}, %{})
    end

    test "a number instead of measurements is deprecated but delivered as %{value: n}",
         %{id: id} do
      :ok = :telemetry.attach(id, [:ex, :old], &Handlers.forward/4, %{pid: self()})

      log =
        capture_log(fn ->
          assert :ok = :telemetry.execute([:ex, :old], 42, %{m: 1})
        end)

      assert log =~ "deprecated"
      assert_received {:event, [:ex, :old], %{value: 42}, %{m: 1}, _, _}
    end

    test "rejects non-map measurements/metadata and empty event names" do
      assert_raise FunctionClauseError, fn -> :telemetry.execute([:ex], "nope", %{}) end
      assert_raise FunctionClauseError, fn -> :telemetry.execute([:ex], %{}, [:not_a_map]) end
      assert_raise FunctionClauseError, fn -> :telemetry.execute([], %{}, %{}) end
    end
  end

  describe "execute/2" do
    test "uses empty metadata", %{id: id} do
      :ok = :telemetry.attach(id, [:ex, :two_args], &Handlers.forward/4, %{pid: self()})
      assert :ok = :telemetry.execute([:ex, :two_args], %{count: 1})
      assert_received {:event, [:ex, :two_args], %{count: 1}, metadata, _, _}
      assert metadata == %{}
    end
  end

  describe "failing handlers" do
    setup do
      failure_id = {:failure_listener, make_ref()}

      :ok = :telemetry.attach(failure_id, @failure_event, &Handlers.forward/4, %{pid: self()})

      on_exit(fn -> :telemetry.detach(failure_id) end)
      :ok
    end

    for {kind, fun, reason} <- [
          {:error, :raise_error, quote(do: %RuntimeError{message: "handler boom"})},
          {:throw, :throw_value, :handler_thrown},
          {:exit, :exit_value, :handler_exited}
        ] do
      test "a handler that fails with #{kind} is detached and reported", %{id: id} do
        event = [:ex, :fails, unquote(kind)]
        config = %{some: :config}
        :ok = :telemetry.attach(id, event, &(Handlers.unquote(fun) / 4), config)

        log =
          capture_log(fn ->
            assert :ok = :telemetry.execute(event, %{x: 1}, %{y: 2})
          end)

        assert log =~ "has failed and has been detached"
        assert log =~ inspect(id)

        assert_received {:event, @failure_event, measurements, metadata, _, _}
        assert measurements |> Map.keys() |> Enum.sort() == [:monotonic_time, :system_time]
        assert is_integer(measurements.monotonic_time)
        assert is_integer(measurements.system_time)

        assert metadata |> Map.keys() |> Enum.sort() ==
                 [:event_name, :handler_config, :handler_id, :kind, :reason, :stacktrace]

        assert %{
                 event_name: ^event,
                 handler_id: ^id,
                 handler_config: ^config,
                 kind: unquote(kind),
                 reason: unquote(reason),
                 stacktrace: [_ | _]
               } = metadata

        assert [] = :telemetry.list_handlers(event)
        assert {:error, :not_found} = :telemetry.detach(id)

        # No second failure: the handler is gone.
        capture_log(fn -> :telemetry.execute(event, %{}, %{}) end)
        refute_received {:event, @failure_event, _, _, _, _}
      end
    end

    test "the failure of one handler does not stop the others", %{id: id} do
      good = {:good, make_ref()}
      on_exit(fn -> :telemetry.detach(good) end)
      event = [:ex, :mixed]
      :ok = :telemetry.attach(id, event, &Handlers.raise_error/4, nil)
      :ok = :telemetry.attach(good, event, &Handlers.forward/4, %{pid: self()})

      capture_log(fn -> :telemetry.execute(event, %{}, %{}) end)
      assert_received {:event, ^event, _, _, _, _}
      assert [%{id: ^good}] = :telemetry.list_handlers(event)

      capture_log(fn -> :telemetry.execute(event, %{}, %{}) end)
      assert_received {:event, ^event, _, _, _, _}
    end

    test "failing on one event of attach_many detaches it from all of them", %{id: id} do
      events = [[:fail, :here], [:fail, :elsewhere]]
      :ok = :telemetry.attach_many(id, events, &Handlers.fail_on_specific/4, %{pid: self()})

      :telemetry.execute([:fail, :elsewhere], %{}, %{})
      assert_received {:event, [:fail, :elsewhere], _, _, _, _}

      capture_log(fn -> :telemetry.execute([:fail, :here], %{}, %{}) end)
      assert_received {:event, @failure_event, _, %{event_name: [:fail, :here]}, _, _}

      assert [] = :telemetry.list_handlers([:fail])
      :telemetry.execute([:fail, :elsewhere], %{}, %{})
      refute_received {:event, [:fail, :elsewhere], _, _, _, _}
    end

    test "the caller never sees the handler's exception", %{id: id} do
      :ok = :telemetry.attach(id, [:ex, :contained], &Handlers.exit_value/4, nil)
      capture_log(fn -> assert :ok = :telemetry.execute([:ex, :contained], %{}, %{}) end)
    end
  end
end
