# capture_log/2 needs Elixir's Logger, which this Erlang-only app does not start.
{:ok, _} = Application.ensure_all_started(:logger)
{:ok, _} = Application.ensure_all_started(:telemetry)

defmodule TelemetryFallback.Handlers do
  @moduledoc false

  # Handler functions used by the tests. They are attached as external
  # captures (&Module.fun/4), so attaching them logs nothing.

  def forward(event, measurements, metadata, %{pid: pid} = config) do
    send(pid, {:event, event, measurements, metadata, config, self()})
  end

  def raise_error(_event, _measurements, _metadata, _config), do: raise("handler boom")
  def throw_value(_event, _measurements, _metadata, _config), do: throw(:handler_thrown)
  def exit_value(_event, _measurements, _metadata, _config), do: exit(:handler_exited)

  # Fails only on the event named [:fail, :here].
  def fail_on_specific([:fail, :here], _measurements, _metadata, _config), do: raise("boom")

  def fail_on_specific(event, measurements, metadata, config),
    do: forward(event, measurements, metadata, config)
end

defmodule TelemetryFallback.Case do
  @moduledoc false
  use ExUnit.CaseTemplate

  using do
    quote do
      import ExUnit.CaptureLog
      alias TelemetryFallback.Handlers
    end
  end

  # Every test gets a unique handler ID that is detached afterwards.
  setup do
    id = {:test_handler, make_ref()}
    on_exit(fn -> :telemetry.detach(id) end)
    {:ok, id: id}
  end
end

ExUnit.start()
