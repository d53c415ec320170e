defmodule Snakepit.Telemetry.NativeTest do
  use ExUnit.Case, async: true

  alias Snakepit.Telemetry.{Catalog, Native}

  test "the NIF is loaded" do
    assert Native.load_error() == nil
  end

  describe "stderr_parse_line/1" do
    test "a valid line becomes the arguments of :telemetry.execute/3" do
      line =
        ~s(TELEMETRY:{"event":"tool.result_size","measurements":{"bytes":42,"mine":"1.5"},) <>
          ~s("metadata":{"tool":"t","custom":"x"},"timestamp_ns":17,"correlation_id":"c1"})

      assert Native.stderr_parse_line(line) ==
               {:ok, [:snakepit, :python, :tool, :result_size], %{:bytes => 42, "mine" => 1.5},
                %{:tool => "t", "custom" => "x", :correlation_id => "c1", :timestamp_ns => 17}}
    end

    test "durations arrive in native time units" do
      line = ~s(TELEMETRY:{"event":"tool.execution.stop","measurements":{"duration":1000000}})
      {:ok, _, %{duration: d}, _} = Native.stderr_parse_line(line)
      assert d == System.convert_time_unit(1_000_000, :nanosecond, :native)
    end

    test "missing correlation id and timestamp are nil" do
      assert {:ok, _, %{}, %{correlation_id: nil, timestamp_ns: nil}} =
               Native.stderr_parse_line(~s(TELEMETRY:{"event":"python.call.start"}))
    end

    test "ordinary output is not telemetry" do
      assert Native.stderr_parse_line("Traceback (most recent call last):") == :not_telemetry
      assert Native.stderr_parse_line(<<0xFF, 0xFE>>) == :not_telemetry
    end

    test "each rejection has a reason atom and a message" do
      cases = [
        {~s(TELEMETRY:{"event":"nope.nope"}), :unknown_event},
        {~s(TELEMETRY:{"event":"#{String.duplicate("a", 200)}"}), :event_name_too_long},
        {line_with(measurements: for(i <- 1..33, do: {"m#{i}", "1"})), :too_many_measurements},
        {line_with(metadata: for(i <- 1..65, do: {"k#{i}", ~s("v")})), :too_many_metadata},
        {line_with(
           metadata: [{String.duplicate("k", Catalog.limits().max_key_bytes + 1), ~s("v")}]
         ), :invalid_key},
        {line_with(measurements: [{"bytes", ~s("lots")}]), :invalid_measurement},
        {~s(TELEMETRY:{"event":"python.call.start","metadata":{"a":[1]}}), :invalid_metadata},
        {~s(TELEMETRY:{"event":"python.call.start","correlation_id":"#{String.duplicate("c", Catalog.limits().max_correlation_id_bytes + 1)}"}),
         :correlation_id_too_long},
        {"TELEMETRY:" <> String.duplicate(" ", 70_000), :line_too_long},
        {"TELEMETRY:{oops", :invalid_json},
        {"TELEMETRY:[]", :invalid_payload}
      ]

      for {line, reason} <- cases do
        assert {:error, {^reason, message}} = Native.stderr_parse_line(line)
        assert is_binary(message) and message != ""
      end
    end
  end

  # GrpcStream.Registration owns the defaults and bounds and always passes
  # every key; the NIF refuses rather than guesses. These are the errors a
  # raw caller sees.
  defp start(overrides) do
    Snakepit.Telemetry.GrpcStream.Registration.defaults()
    |> Map.merge(%{endpoint: "127.0.0.1:1", worker_id: "opts"})
    |> Map.merge(overrides)
    |> Native.stream_start(self())
  end

  describe "stream_start/2 options" do
    alias Snakepit.Telemetry.GrpcStream.Registration

    test "a missing tuning value is an error naming it" do
      opts = Map.delete(Map.merge(Registration.defaults(), %{endpoint: "127.0.0.1:1"}), :credit)

      assert Native.stream_start(opts, self()) ==
               {:error, {:invalid_option, {"credit", "missing"}}}
    end

    test "an out-of-range or mistyped value is refused, never clamped" do
      assert start(%{max_batch: 0}) == {:error, {:invalid_option, {"max_batch", "out of range"}}}
      assert start(%{credit: 1.5}) == {:error, {:invalid_option, {"credit", "not an integer"}}}

      assert start(%{rpc: :fast}) ==
               {:error, {:invalid_option, {"rpc", "not :auto, :batched or :stock"}}}
    end

    test "the defaults start a stream" do
      assert {:ok, {id, handle}} = start(%{})
      assert is_integer(id)
      assert :ok = Native.stream_stop(handle)
    end
  end

  describe "when the library cannot be loaded" do
    test "calls raise an error that says what happened and how to fix it" do
      ebin = Application.app_dir(:snakepit_telemetry, "ebin")

      {out, 0} =
        System.cmd(
          "elixir",
          [
            "-pa",
            ebin,
            "-e",
            "try do Snakepit.Telemetry.Native.catalog_version() rescue e -> IO.puts(Exception.message(e)) end"
          ],
          env: [{"SNAKEPIT_TELEMETRY_NIF", "/nonexistent/snakepit_telemetry_nif"}],
          stderr_to_stdout: true
        )

      assert out =~ "the Snakepit telemetry NIF is not loaded"
      assert out =~ "/nonexistent/snakepit_telemetry_nif.so"
      assert out =~ "mix compile"
    end
  end

  # Values are JSON text.
  defp line_with(fields) do
    encode = fn pairs -> Enum.map_join(pairs, ",", fn {k, v} -> ~s("#{k}":#{v}) end) end
    m = encode.(Keyword.get(fields, :measurements, []))
    md = encode.(Keyword.get(fields, :metadata, []))
    ~s(TELEMETRY:{"event":"python.call.start","measurements":{#{m}},"metadata":{#{md}}})
  end
end
