defmodule TelemetryFallback.TelemetryTestHelperTest do
  use TelemetryFallback.Case, async: false

  test "attach_event_handlers/2 forwards events as {event, ref, measurements, metadata}" do
    events = [[:tt, :one], [:tt, :two]]
    ref = :telemetry_test.attach_event_handlers(self(), events)
    on_exit(fn -> :telemetry.detach(ref) end)

    assert is_reference(ref)

    :telemetry.execute([:tt, :one], %{a: 1}, %{b: 2})
    :telemetry.execute([:tt, :two], %{c: 3}, %{d: 4})
    :telemetry.execute([:tt, :other], %{}, %{})

    assert_received {[:tt, :one], ^ref, %{a: 1}, %{b: 2}}
    assert_received {[:tt, :two], ^ref, %{c: 3}, %{d: 4}}
    refute_received {[:tt, :other], _, _, _}
  end

  test "the returned ref is the handler ID and the handler is an external function" do
    log =
      capture_log([level: :debug], fn ->
        ref = :telemetry_test.attach_event_handlers(self(), [[:tt, :id]])
        send(self(), {:ref, ref})
      end)

    assert log == ""
    assert_received {:ref, ref}

    assert [%{id: ^ref, event_name: [:tt, :id], function: fun}] =
             :telemetry.list_handlers([:tt, :id])

    assert Function.info(fun, :type) == {:type, :external}

    assert :ok = :telemetry.detach(ref)
    :telemetry.execute([:tt, :id], %{}, %{})
    refute_received {[:tt, :id], _, _, _}
  end

  test "each call attaches a separate handler" do
    ref1 = :telemetry_test.attach_event_handlers(self(), [[:tt, :twice]])
    ref2 = :telemetry_test.attach_event_handlers(self(), [[:tt, :twice]])
    on_exit(fn -> Enum.each([ref1, ref2], &:telemetry.detach/1) end)

    assert ref1 != ref2
    :telemetry.execute([:tt, :twice], %{}, %{})
    assert_received {[:tt, :twice], ^ref1, _, _}
    assert_received {[:tt, :twice], ^ref2, _, _}
  end

  test "works with span/3 events" do
    ref =
      :telemetry_test.attach_event_handlers(self(), [[:tt, :span, :start], [:tt, :span, :stop]])

    on_exit(fn -> :telemetry.detach(ref) end)

    :telemetry.span([:tt, :span], %{}, fn -> {:ok, %{}} end)
    assert_received {[:tt, :span, :start], ^ref, _, %{telemetry_span_context: ctx}}
    assert_received {[:tt, :span, :stop], ^ref, %{duration: _}, %{telemetry_span_context: ^ctx}}
  end
end
