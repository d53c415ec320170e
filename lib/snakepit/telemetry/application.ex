defmodule Snakepit.Telemetry.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    Snakepit.Telemetry.PythonCapture.init_counters()
    Snakepit.Python.log_choice()

    # The application's own events, before any stream starts (the NIF
    # validates against the catalog plus these).
    case Snakepit.Telemetry.AppEvents.install() do
      :ok -> start_tree()
      {:error, reason} -> {:error, reason}
    end
  end

  defp start_tree do
    pools =
      for {name, opts} <- Application.get_env(:snakepit_telemetry, :pools, []),
          do: {Snakepit.Pool, Keyword.put(opts, :name, name)}

    children = [
      {Registry, keys: :unique, name: Snakepit.Registry},
      # Cluster membership (:pg), before the processes that join it.
      Snakepit.Telemetry.Cluster,
      Snakepit.Telemetry.Cluster.Directory,
      # Before GrpcStream, which it outlives: settings survive its restarts.
      Snakepit.Telemetry.Settings,
      Snakepit.Telemetry.GrpcStream | pools
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: Snakepit.Telemetry.Supervisor)
  end
end
