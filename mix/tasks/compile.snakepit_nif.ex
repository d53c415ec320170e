defmodule Mix.Tasks.Compile.SnakepitNif do
  @shortdoc "Builds the Rust telemetry NIF with cargo"
  @moduledoc """
  Builds `native/snakepit_telemetry_nif` with `cargo build --release` and
  places the library at `priv/native/snakepit_telemetry_nif.so`.

  Runs only when a Rust source, a Cargo manifest or lock file, or the event
  catalog (`priv/catalog/*.json`, compiled into the crate) is newer than the
  library, so a warm `mix compile` costs nothing. Listed in the project's
  `compilers:` ahead of the Elixir compiler; no Hex package is involved.

  ## Options

    * `--force` - rebuild even when nothing changed

  ## Environment

    * `SNAKEPIT_CARGO` - the cargo binary (default `cargo`)
    * `SNAKEPIT_TELEMETRY_PROFILE` - the Cargo profile: `release` (default;
      no debug info) or `profiling` (line tables, for `perf` and
      `valgrind --tool=callgrind`; `bench/profile.sh` sets it). A change of
      profile rebuilds.
  """
  use Mix.Task.Compiler

  @crate "snakepit_telemetry_nif"

  @impl true
  def run(args) do
    {opts, _, _} = OptionParser.parse(args, switches: [force: :boolean])
    root = root()

    if opts[:force] || Mix.Utils.stale?(sources(root), [target(root)]) ||
         built_profile(root) != profile() do
      build(root)
    else
      {:noop, []}
    end
  end

  @impl true
  def manifests, do: []

  @impl true
  def clean, do: File.rm(target(root()))

  defp profile, do: System.get_env("SNAKEPIT_TELEMETRY_PROFILE", "release")

  # The profile the installed library was built with (written beside it).
  defp built_profile(root) do
    case File.read(target(root) <> ".profile") do
      {:ok, name} -> String.trim(name)
      {:error, _} -> "release"
    end
  end

  @doc "The path of the built NIF library inside the project."
  def target(root), do: Path.join([root, "priv", "native", @crate <> ".so"])

  defp root, do: Path.dirname(Mix.Project.project_file())

  defp sources(root) do
    Path.wildcard(Path.join(root, "native/**/*.{rs,toml}")) ++
      Path.wildcard(Path.join(root, "priv/catalog/*.json")) ++
      Enum.filter([Path.join(root, "Cargo.toml"), Path.join(root, "Cargo.lock")], &File.exists?/1)
  end

  defp build(root) do
    cargo = System.get_env("SNAKEPIT_CARGO", "cargo")

    case System.find_executable(cargo) do
      nil ->
        error(
          "cargo was not found (looked for #{inspect(cargo)}). Install Rust (rustup) " <>
            "or run `make setup`, then `mix compile` again."
        )

      exe ->
        Mix.shell().info("==> cargo build --profile #{profile()} -p #{@crate}")
        args = ["build", "--profile", profile(), "--locked", "-p", @crate]

        case System.cmd(exe, args, cd: root, stderr_to_stdout: true, into: IO.stream()) do
          {_, 0} -> install(root)
          {_, status} -> error("cargo build failed with exit status #{status} (output above)")
        end
    end
  end

  # cargo names the library per platform; the BEAM loads "<name>.so" on unix.
  defp install(root) do
    built =
      ["lib#{@crate}.so", "lib#{@crate}.dylib"]
      |> Enum.map(&Path.join([root, "target", profile(), &1]))
      |> Enum.find(&File.exists?/1)

    if built do
      File.mkdir_p!(Path.dirname(target(root)))
      # Copy then rename: a running VM may have the old library mapped.
      tmp = target(root) <> ".tmp"
      File.cp!(built, tmp)
      File.rename!(tmp, target(root))
      File.write!(target(root) <> ".profile", profile())
      {:ok, []}
    else
      error("cargo succeeded but no library was found under target/#{profile()}")
    end
  end

  defp error(message) do
    Mix.shell().error("snakepit_nif: " <> message)

    diagnostic = %Mix.Task.Compiler.Diagnostic{
      compiler_name: "snakepit_nif",
      file: Path.join(root(), "Cargo.toml"),
      message: message,
      position: nil,
      severity: :error
    }

    {:error, [diagnostic]}
  end
end
