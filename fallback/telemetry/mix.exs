defmodule Telemetry.Fallback.MixProject do
  # Local, Hex-free implementation of the `:telemetry` 1.x API.
  #
  # The sources are plain Erlang in `src/`; Mix compiles them with erlc. This
  # project has no dependencies, so it can be used as a path dependency:
  #
  #     {:telemetry, path: "fallback/telemetry"}
  use Mix.Project

  def project do
    [
      app: :telemetry,
      version: "1.4.1",
      elixir: "~> 1.11",
      language: :erlang,
      compilers: [:erlang, :app],
      erlc_paths: ["src"],
      erlc_include_path: "src",
      erlc_options: [:debug_info, :warn_unused_import, :warn_export_vars],
      deps: [],
      description: "Local implementation of the telemetry 1.x API (used only where Hex is absent)"
    ]
  end

  def application do
    [
      mod: {:telemetry_app, []},
      registered: [:telemetry_sup, :telemetry_handler_table],
      applications: [:kernel, :stdlib]
    ]
  end
end
