defmodule TelemetryFallback.SpanTest do
  use TelemetryFallback.Case, async: false

  @prefix [:span, :test]
  @start @prefix ++ [:start]
  @stop @prefix ++ [:stop]
  @exception @prefix ++ [:exception]

  setup %{id: id} do
    :ok =
      :telemetry.attach_many(id, [@start, @stop, @exception], &Handlers.forward/4, %{
        pid: self()
      })

    :ok
  end

  test "emits start then stop and returns the result" do
    assert :done = :telemetry.span(@prefix, %{req: 1}, fn -> {:done, %{req: 1, status: 200}} end)

    assert_received {:event, @start, start_m, start_meta, _, _}
    assert start_m |> Map.keys() |> Enum.sort() == [:monotonic_time, :system_time]
    assert %{req: 1, telemetry_span_context: ctx} = start_meta
    assert is_reference(ctx)
    assert map_size(start_meta) == 2

    assert_received {:event, @stop, stop_m, stop_meta, _, _}
    assert stop_m |> Map.keys() |> Enum.sort() == [:duration, :monotonic_time]
    assert stop_meta == %{req: 1, status: 200, telemetry_span_context: ctx}

    refute_received {:event, @exception, _, _, _, _}
  end

  test "durations and times are integers in native units" do
    sleep_ms = 20
    before = System.monotonic_time()

    :telemetry.span(@prefix, %{}, fn ->
      Process.sleep(sleep_ms)
      {:ok, %{}}
    end)

    after_ = System.monotonic_time()

    assert_received {:event, @start, %{monotonic_time: t0, system_time: sys}, _, _, _}
    assert_received {:event, @stop, %{monotonic_time: t1, duration: duration}, _, _, _}

    assert is_integer(sys)
    assert before <= t0 and t0 <= t1 and t1 <= after_
    assert duration == t1 - t0
    assert duration >= System.convert_time_unit(sleep_ms, :millisecond, :native)
  end

  test "every span gets its own span context" do
    :telemetry.span(@prefix, %{}, fn -> {:ok, %{}} end)
    :telemetry.span(@prefix, %{}, fn -> {:ok, %{}} end)

    assert_received {:event, @start, _, %{telemetry_span_context: ctx1}, _, _}
    assert_received {:event, @stop, _, %{telemetry_span_context: ^ctx1}, _, _}
    assert_received {:event, @start, _, %{telemetry_span_context: ctx2}, _, _}
    assert_received {:event, @stop, _, %{telemetry_span_context: ^ctx2}, _, _}
    assert ctx1 != ctx2
  end

  test "a span context supplied by the caller is kept" do
    :telemetry.span(@prefix, %{telemetry_span_context: :mine}, fn ->
      {:ok, %{telemetry_span_context: :mine}}
    end)

    assert_received {:event, @start, _, %{telemetry_span_context: :mine}, _, _}
    assert_received {:event, @stop, _, %{telemetry_span_context: :mine}, _, _}
  end

  test "extra measurements are merged into stop, but cannot override the standard ones" do
    assert 7 =
             :telemetry.span(@prefix, %{}, fn ->
               {7, %{bytes: 512, duration: -1, monotonic_time: -1}, %{done: true}}
             end)

    assert_received {:event, @start, %{monotonic_time: t0}, _, _, _}
    assert_received {:event, @stop, measurements, %{done: true}, _, _}

    assert measurements |> Map.keys() |> Enum.sort() == [:bytes, :duration, :monotonic_time]
    assert measurements.bytes == 512
    assert measurements.duration >= 0
    assert measurements.duration == measurements.monotonic_time - t0
  end

  for {kind, raiser, reason} <- [
        {:error, quote(do: raise(ArgumentError, "bad")), quote(do: %ArgumentError{})},
        {:throw, quote(do: throw(:thrown)), :thrown},
        {:exit, quote(do: exit(:exited)), :exited}
      ] do
    test "#{kind} emits exception and is re-raised with the same class" do
      caught =
        try do
          :telemetry.span(@prefix, %{req: 2}, fn -> unquote(raiser) end)
          :no_exception
        catch
          kind, reason -> {kind, reason, __STACKTRACE__}
        end

      assert {unquote(kind), unquote(reason), stacktrace} = caught

      assert_received {:event, @start, _, %{telemetry_span_context: ctx}, _, _}
      assert_received {:event, @exception, measurements, metadata, _, _}
      refute_received {:event, @stop, _, _, _, _}

      assert measurements |> Map.keys() |> Enum.sort() == [:duration, :monotonic_time]
      assert measurements.duration >= 0

      assert metadata |> Map.keys() |> Enum.sort() ==
               [:kind, :reason, :req, :stacktrace, :telemetry_span_context]

      assert %{
               kind: unquote(kind),
               reason: unquote(reason),
               req: 2,
               telemetry_span_context: ^ctx
             } = metadata

      # The stacktrace reported and the one re-raised are the original one.
      assert metadata.stacktrace == stacktrace
    end
  end

  test "the exception event is built from the start metadata" do
    catch_error(:telemetry.span(@prefix, %{from: :start}, fn -> raise "x" end))
    assert_received {:event, @exception, _, %{from: :start, kind: :error}, _, _}
  end

  test "the re-raised exception can be rescued normally" do
    assert_raise ArgumentError, "bad", fn ->
      :telemetry.span(@prefix, %{}, fn -> raise ArgumentError, "bad" end)
    end
  end

  test "a failing stop handler does not affect the span result", %{id: id} do
    failing = {:failing_stop, make_ref()}
    on_exit(fn -> :telemetry.detach(failing) end)
    :ok = :telemetry.attach(failing, @stop, &Handlers.raise_error/4, nil)

    capture_log(fn ->
      assert :result = :telemetry.span(@prefix, %{}, fn -> {:result, %{}} end)
    end)

    assert [%{id: ^id}] = :telemetry.list_handlers(@stop)
  end
end
