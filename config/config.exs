import Config

# Tests exercise malformed input on purpose; its debug logs are noise there.
if config_env() == :test, do: config(:logger, level: :info)
