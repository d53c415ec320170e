defmodule Snakepit.Docs.ReadmeExamplesTest do
  # The README's examples run here, taken from the README itself, so they
  # cannot drift: the tool module (in a real worker), the handler (attached,
  # and fed by a real call), and the telemetry_metrics definitions (each
  # metric's event, measurement and tags must be ones that always arrive;
  # Telemetry.Metrics itself is a Hex package this machine cannot fetch, so
  # its reporter is not run).
  use ExUnit.Case, async: false

  alias Snakepit.GRPCWorker
  alias Snakepit.Telemetry.{GrpcStream, Naming}

  @moduletag :tmp_dir

  @readme File.read!(Path.expand("../../../README.md", __DIR__))

  # The first ```lang block after the heading `heading`.
  defp block(heading, lang) do
    [_, after_heading] = String.split(@readme, heading, parts: 2)
    [_, rest] = String.split(after_heading, "```#{lang}\n", parts: 2)
    [code, _] = String.split(rest, "```", parts: 2)
    code
  end

  defp start_worker(dir, id) do
    File.mkdir_p!(Path.join(dir, "my_app"))
    File.write!(Path.join(dir, "my_app/__init__.py"), "")
    File.write!(Path.join(dir, "my_app/tools.py"), block("Your own tools", "python"))

    start_supervised!(
      {GRPCWorker,
       id: id, pool_name: :readme, args: ["--tool-module", "my_app.tools"], python_path: [dir]}
    )
  end

  test "the tool example runs in a worker and its call reports once", %{tmp_dir: dir} do
    id = "readme-tool-#{System.unique_integer([:positive])}"

    ref =
      :telemetry_test.attach_event_handlers(self(), [
        [:snakepit, :python, :tool, :execution, :stop]
      ])

    on_exit(fn -> :telemetry.detach(ref) end)
    w = start_worker(dir, id)

    assert {:ok, %{"label" => "cat"}} =
             GRPCWorker.execute(w, "predict", %{user: "ann"}, correlation_id: "readme-1")

    assert_receive {_, _, %{duration: _}, %{tool: "predict", correlation_id: "readme-1"}}, 5_000
    # The example does not wrap its body in a span of its own: one stop per call.
    refute_receive {_, _, _, %{correlation_id: "readme-1"}}, 300
  end

  test "the handler example prints each tool's duration", %{tmp_dir: dir} do
    id = "readme-handler-#{System.unique_integer([:positive])}"
    w = start_worker(dir, id)
    on_exit(fn -> :telemetry.detach("log-tool-durations") end)
    Code.eval_string(block("### Attach handlers", "elixir"))

    # The handler runs in GrpcStream: its output goes to that process's group leader.
    {:ok, io} = StringIO.open("")
    stream = Process.whereis(GrpcStream)
    leader = Process.info(stream, :group_leader) |> elem(1)
    Process.group_leader(stream, io)
    on_exit(fn -> if Process.alive?(stream), do: Process.group_leader(stream, leader) end)

    {:ok, _} = GRPCWorker.execute(w, "predict", %{user: "bo"}, correlation_id: "readme-2")

    Snakepit.Test.Eventually.eventually(fn ->
      elem(StringIO.contents(io), 1) =~ ~r/predict took \d+ ms on #{id} \(correlation readme-2\)/
    end)
  end

  test "every telemetry_metrics metric names an event, measurement and tags that always arrive" do
    metrics =
      Regex.scan(
        ~r/(summary|counter|distribution|sum|last_value)\("([a-z_.]+)"(.*)\)/,
        block("### With telemetry_metrics", "elixir")
      )

    assert length(metrics) >= 8

    for [_, kind, name, rest] <- metrics do
      parts = name |> String.split(".") |> Enum.map(&String.to_existing_atom/1)
      {event, [measurement]} = Enum.split(parts, -1)
      doc = Naming.describe(event)
      assert doc && doc.emitted, "#{kind} #{name}: #{inspect(event)} is not an emitted event"

      assert measurement in doc.sent.measurements,
             "#{kind} #{name}: #{measurement} is not always in #{inspect(event)}"

      tags =
        case Regex.run(~r/tags: \[([^\]]*)\]/, rest) do
          [_, list] -> for ":" <> t <- String.split(list, ", "), do: String.to_existing_atom(t)
          nil -> []
        end

      assert tags -- doc.sent.metadata == [],
             "#{kind} #{name}: tags #{inspect(tags -- doc.sent.metadata)} do not always arrive"
    end
  end
end
