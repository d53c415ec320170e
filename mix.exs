# The Mix compiler that builds the Rust NIF lives outside lib/ so it exists
# before the project compiles (no Hex, no :rustler package needed).
Code.require_file("mix/tasks/compile.snakepit_nif.ex", __DIR__)

defmodule SnakepitTelemetry.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :snakepit_telemetry,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:snakepit_nif | Mix.compilers()],
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: deps(),
      docs: [main: "readme", extras: ["README.md"]]
    ]
  end

  def application do
    [
      extra_applications: [:logger, :crypto, :public_key],
      mod: {Snakepit.Telemetry.Application, []}
    ]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp deps do
    [telemetry_dep()]
  end

  # Users with Hex get the real :telemetry. Where Hex is absent (air-gapped
  # builds, like this project's CI), the project's own implementation of the
  # :telemetry 1.x API in fallback/telemetry is used instead; it is never
  # compiled when the real package is there. SNAKEPIT_TELEMETRY_FALLBACK=1
  # forces the fallback.
  defp telemetry_dep do
    if Code.ensure_loaded?(Hex) and System.get_env("SNAKEPIT_TELEMETRY_FALLBACK") != "1" do
      {:telemetry, "~> 1.0"}
    else
      {:telemetry, path: Path.expand("fallback/telemetry", __DIR__)}
    end
  end
end
