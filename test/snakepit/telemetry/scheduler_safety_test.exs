defmodule Snakepit.Telemetry.SchedulerSafetyTest do
  # Watches the whole VM: nothing else may run meanwhile.
  use ExUnit.Case, async: false

  alias Snakepit.Telemetry.{GrpcStream, Native, Naming}
  alias Snakepit.Test.LoadGen

  @tag timeout: 60_000
  test "under full load no NIF call causes a long schedule (> 1 ms)" do
    lg = LoadGen.start!(["--rate", "0"])
    ids = for i <- 1..4, do: "sched#{i}_#{System.unique_integer([:positive])}"
    on_exit(fn -> Enum.each(ids, &GrpcStream.unregister_worker/1) end)

    counter = :counters.new(1, [])
    handler = fn _, _, _, c -> :counters.add(c, 1, 1) end
    :telemetry.attach_many("sched-count", Naming.python_events(), handler, counter)
    on_exit(fn -> :telemetry.detach("sched-count") end)

    :erlang.system_monitor(self(), [{:long_schedule, 1}])
    on_exit(fn -> :erlang.system_monitor(:undefined) end)

    for id <- ids, do: {:ok, _} = GrpcStream.register_worker(lg.endpoint, %{worker_id: id})

    # Meanwhile, hammer the other NIFs from this process.
    line =
      ~s(TELEMETRY:{"event":"python.call.start","metadata":{"tool":"#{String.duplicate("x", 4000)}"}})

    deadline = System.monotonic_time(:millisecond) + 2_000

    Stream.repeatedly(fn ->
      Native.stderr_parse_line(line)
      Enum.each(ids, &GrpcStream.stats/1)
      GrpcStream.update_sampling(hd(ids), 1.0)
    end)
    |> Enum.take_while(fn _ -> System.monotonic_time(:millisecond) < deadline end)

    :erlang.system_monitor(:undefined)
    assert :counters.get(counter, 1) > 10_000, "the load did not run"

    all = drain()
    ours = for {:monitor, _pid, :long_schedule, info} <- all, nif_call?(info), do: info

    if System.get_env("SNAKEPIT_SHOW_LONG_SCHEDULES"),
      do: IO.inspect(all, label: "long schedules")

    assert ours == []
  end

  defp nif_call?(info) do
    Enum.any?([info[:in], info[:out]], fn
      {Native, _, _} -> true
      _ -> false
    end)
  end

  defp drain(acc \\ []) do
    receive do
      {:monitor, _, :long_schedule, _} = m -> drain([m | acc])
    after
      0 -> acc
    end
  end
end
