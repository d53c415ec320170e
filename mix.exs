# The Mix compiler that installs the Rust NIF (precompiled or built with
# cargo) and its helpers live in mix/, outside lib/, so they exist before
# the project compiles (no Hex, no :rustler package needed). They are
# compiled to .beam files (rebuilt when a source changes) rather than loaded
# from source, so `mix help compile.snakepit_nif` finds the documentation.
unless Code.ensure_loaded?(Mix.Tasks.Compile.SnakepitNif) do
  sources = Path.wildcard(Path.expand("mix/**/*.ex", __DIR__))
  out = Path.expand("_build/mix_tasks", __DIR__)

  if Mix.Utils.stale?(sources, [Path.join(out, "Elixir.Mix.Tasks.Compile.SnakepitNif.beam")]) do
    File.rm_rf!(out)
    File.mkdir_p!(out)
    {:ok, _, _} = Kernel.ParallelCompiler.compile_to_path(sources, out)
  end

  Code.prepend_path(out)
end

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
