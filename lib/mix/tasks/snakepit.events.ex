defmodule Mix.Tasks.Snakepit.Events do
  @shortdoc "Prints the reference of every Snakepit telemetry event, the application's included"
  @moduledoc """
  Prints, as Markdown, every `:telemetry` event Snakepit emits: name,
  measurements with units, metadata (always sent, and accepted), the
  reserved names, and the application's own events from
  `config :snakepit_telemetry, events: [...]` (see
  `Snakepit.Telemetry.AppEvents`). The library part is the documentation
  of `Snakepit.Telemetry.Events`.

      $ mix snakepit.events > docs/telemetry_events.md

  ## Options

    * `--application-only` - only the application's events
  """
  use Mix.Task

  alias Snakepit.Telemetry.{AppEvents, Events}

  @impl true
  def run(argv) do
    {opts, _rest, invalid} = OptionParser.parse(argv, strict: [application_only: :boolean])
    if invalid != [], do: Mix.raise("unknown option: #{inspect(invalid)}")
    Mix.Task.run("app.config")

    case AppEvents.configured_entries() do
      {:ok, app} ->
        text =
          if opts[:application_only],
            do: Events.Reference.build(app) |> application_part(),
            else: Events.Reference.build(app)

        Mix.shell().info(text)

      {:error, reason} ->
        Mix.raise(
          "bad event definition in config :snakepit_telemetry, :events: #{inspect(reason)}"
        )
    end
  end

  defp application_part(text) do
    case String.split(text, "## Application events", parts: 2) do
      [_, rest] -> "## Application events" <> String.replace(rest, ~r/## Reserved.*/s, "")
      _ -> "No application events are configured.\n"
    end
  end
end
