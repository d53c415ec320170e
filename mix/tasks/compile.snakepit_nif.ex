defmodule Mix.Tasks.Compile.SnakepitNif do
  @shortdoc "Installs the Rust telemetry NIF: precompiled, or built with cargo"
  @moduledoc """
  Installs the Rust telemetry NIF at `priv/native/snakepit_telemetry_nif.so`:
  a precompiled artifact when the release has one for this machine, else a
  source build of `native/snakepit_telemetry_nif` with cargo.

  **Precompiled** (no Rust toolchain needed), as rustler_precompiled does:
  the artifact `libsnakepit_telemetry_nif-v<version>-nif-<nif version>-<target>.so.tar.gz`
  for the running target (e.g. `x86_64-unknown-linux-gnu`) and NIF version
  (e.g. `2.16`) is fetched from the base URL with OTP's `:httpc` (proxies
  from `http_proxy`/`https_proxy`/`no_proxy`, the system's CA certificates
  or `SNAKEPIT_TELEMETRY_CACERTFILE`; a `file://` URL reads a local mirror),
  checked against the SHA-256 in `checksum-Elixir.Snakepit.Telemetry.Native.exs`
  (committed with each release; a mismatch is an error, never a fallback)
  and unpacked. Used when that file lists an artifact for this machine.

  **Source build** otherwise: when the checksum file has no artifact for
  this target or NIF version, the version is a pre-release, or it is forced
  (`SNAKEPIT_TELEMETRY_BUILD=1`, or `config :snakepit_telemetry,
  force_build: true`). Runs only when a Rust source, a Cargo manifest or
  lock file, or the event catalog (`priv/catalog/*.json`, compiled into the
  crate) is newer than the library, so a warm `mix compile` costs nothing.
  A source build also runs `scripts/build_speedups.sh`, which builds the
  Python worker's optional native telemetry encoder; if that fails, only a
  message says so (workers then encode in pure Python).

  Listed in the project's `compilers:` ahead of the Elixir compiler; no Hex
  package is involved. `mix snakepit.nif.package` makes the artifact of
  this machine's build and records its checksum.

  ## Options

    * `--force` - rebuild even when nothing changed

  ## Environment

    * `SNAKEPIT_TELEMETRY_BUILD` - `1` forces the source build
    * `SNAKEPIT_TELEMETRY_NIF_URL` - base URL of the artifacts (default: the
      release page; `config :snakepit_telemetry, nif_base_url: ...` too),
      e.g. `file:///mirror/snakepit` for an air-gapped mirror
    * `SNAKEPIT_TELEMETRY_CACERTFILE` - CA bundle for https
    * `SNAKEPIT_CARGO` - the cargo binary (default `cargo`)
    * `SNAKEPIT_TELEMETRY_PROFILE` - the Cargo profile: `release` (default;
      no debug info) or `profiling` (line tables, for `perf` and
      `valgrind --tool=callgrind`; `bench/profile.sh` sets it). A change of
      profile rebuilds.
  """
  use Mix.Task.Compiler

  @crate "snakepit_telemetry_nif"

  alias SnakepitNif.Precompiled

  @impl true
  def run(args) do
    {opts, _, _} = OptionParser.parse(args, switches: [force: :boolean])
    root = root()

    case decision(root) do
      {:download, artifact, sum} ->
        precompiled(root, artifact, sum)

      {:build, {:no_artifact, _} = reason} ->
        if File.exists?(Precompiled.checksum_path(root)),
          do: source_build(root, reason, opts),
          else: source_build(root, :no_release, opts)

      {:build, reason} ->
        source_build(root, reason, opts)
    end
  end

  @doc false
  def decision(root) do
    Precompiled.decide(%{
      version: Mix.Project.config()[:version],
      env: System.get_env("SNAKEPIT_TELEMETRY_BUILD"),
      force_build: Application.get_env(:snakepit_telemetry, :force_build, false),
      checksums: Precompiled.read_checksums(root),
      target: Precompiled.target(),
      nif_version: Precompiled.nif_version()
    })
  end

  defp source_build(root, reason, opts) do
    if opts[:force] || Mix.Utils.stale?(sources(root), [target(root)]) ||
         built_profile(root) != profile() do
      Mix.shell().info("==> snakepit_nif: building from source (#{why(reason)})")
      build(root)
    else
      {:noop, []}
    end
  end

  defp why(:forced), do: "SNAKEPIT_TELEMETRY_BUILD is set"
  defp why(:configured), do: "config :snakepit_telemetry, force_build: true"
  defp why(:prerelease), do: "a pre-release version"
  defp why({:no_artifact, name}), do: "no precompiled #{name} in the checksum file"
  defp why(:no_release), do: "no checksum file: this version has no precompiled NIFs"
  defp why({:unsupported_target, arch}), do: "no precompiled NIFs for #{arch}"

  # The artifact, fetched, checked and unpacked; nothing to do when the one
  # installed is that artifact already.
  defp precompiled(root, artifact, sum) do
    marker = target(root) <> ".profile"

    if File.exists?(target(root)) and File.read(marker) == {:ok, "precompiled " <> sum} do
      {:noop, []}
    else
      url =
        String.trim_trailing(Precompiled.base_url(Mix.Project.config()[:version]), "/") <>
          "/" <> artifact

      Mix.shell().info("==> snakepit_nif: using the precompiled #{artifact} (#{url})")

      with {:ok, body} <- fetched(url),
           :ok <- verified(body, sum, artifact),
           {:ok, so} <- unpacked(body) do
        File.mkdir_p!(Path.dirname(target(root)))
        tmp = target(root) <> ".tmp"
        File.write!(tmp, so)
        File.rename!(tmp, target(root))
        File.write!(marker, "precompiled " <> sum)
        {:ok, []}
      end
    end
  end

  defp fetched(url) do
    case Precompiled.fetch(url) do
      {:ok, body} ->
        {:ok, body}

      {:error, reason} ->
        error(
          "cannot download #{url}: #{inspect(reason)}. Set SNAKEPIT_TELEMETRY_NIF_URL to a " <>
            "mirror (file:// works), or SNAKEPIT_TELEMETRY_BUILD=1 to build from source with cargo."
        )
    end
  end

  defp verified(body, sum, artifact) do
    case Precompiled.checksum(body) do
      ^sum ->
        :ok

      other ->
        error(
          "checksum mismatch for #{artifact}: expected #{sum}, got #{other}. The download " <>
            "is refused (a tampered or corrupt artifact, or a stale checksum file)."
        )
    end
  end

  defp unpacked(body) do
    case Precompiled.unpack(body) do
      {:ok, so} -> {:ok, so}
      {:error, reason} -> error("the artifact is not usable: #{inspect(reason)}")
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
          {_, 0} ->
            installed = install(root)
            if match?({:ok, _}, installed), do: speedups(root)
            installed

          {_, status} ->
            error("cargo build failed with exit status #{status} (output above)")
        end
    end
  end

  # cargo names the library per platform; the BEAM loads "<name>.so" on unix.
  defp install(root) do
    # Where cargo wrote it: CARGO_TARGET_DIR (else target/), and under
    # <triple>/ with CARGO_BUILD_TARGET (a release job).
    target_dir = System.get_env("CARGO_TARGET_DIR") || Path.join(root, "target")

    dir =
      case System.get_env("CARGO_BUILD_TARGET") do
        nil -> Path.join(target_dir, profile())
        triple -> Path.join([target_dir, triple, profile()])
      end

    built =
      ["lib#{@crate}.so", "lib#{@crate}.dylib"]
      |> Enum.map(&Path.join(dir, &1))
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

  # The Python worker's optional native encoder, built along with the NIF
  # (scripts/build_speedups.sh). Not an error when it fails: workers then
  # encode telemetry in pure Python.
  defp speedups(root) do
    script = Path.join(root, "scripts/build_speedups.sh")

    if File.exists?(script) do
      Mix.shell().info("==> scripts/build_speedups.sh (the worker's native encoder)")

      case System.cmd("bash", [script], cd: root, stderr_to_stdout: true) do
        {_, 0} ->
          :ok

        {out, status} ->
          Mix.shell().info(
            "snakepit_nif: the worker's native encoder was not built (exit status #{status}); " <>
              "workers encode telemetry in pure Python.\n" <> out
          )
      end
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
