import Config

# Tests exercise malformed input on purpose; its debug logs are noise there.
if config_env() == :test, do: config(:logger, level: :info)

# The tests call the demo tools (emit_events, telemetry_state, ...); a
# worker loads them only when asked.
if config_env() == :test, do: config(:snakepit_telemetry, demo_tools: true)

# An application-defined event, as a user's application would declare it
# (Snakepit.Telemetry.AppEvents; test/snakepit/telemetry/app_events_test.exs).
if config_env() == :test do
  config :snakepit_telemetry,
    events: [
      [
        python_name: "test_app.prediction",
        event: [:test_app, :prediction],
        measurements: [:score],
        metadata: [:customer_id]
      ]
    ],
    metadata_keys: [:tenant]
end
