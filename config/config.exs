import Config

# Tests exercise malformed input on purpose; its debug logs are noise there.
if config_env() == :test, do: config(:logger, level: :info)

# The tests call the demo tools (emit_events, telemetry_state, ...); a
# worker loads them only when asked.
if config_env() == :test, do: config(:snakepit_telemetry, demo_tools: true)
