defmodule Snakepit.Telemetry.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    Snakepit.Telemetry.PythonCapture.init_counters()
    children = [Snakepit.Telemetry.GrpcStream]
    Supervisor.start_link(children, strategy: :one_for_one, name: Snakepit.Telemetry.Supervisor)
  end
end
