defmodule Mix.Tasks.Snakepit.Nif.Package do
  @shortdoc "Packages this machine's NIF build as a release artifact and records its checksum"
  @moduledoc """
  Packages the NIF built on this machine (`priv/native/snakepit_telemetry_nif.so`,
  from a source build) as the precompiled artifact for its target and NIF
  version, and writes its SHA-256 into `checksum-Elixir.Snakepit.Telemetry.Native.exs`
  (entries for other targets are kept).

      $ SNAKEPIT_TELEMETRY_BUILD=1 mix compile
      $ mix snakepit.nif.package
      _build/nif_artifacts/libsnakepit_telemetry_nif-v0.1.0-nif-2.16-x86_64-unknown-linux-gnu.so.tar.gz
        sha256:...

  The release flow: a CI job per target builds and packages (see
  `.github/workflows/nif-release.yml`), the artifacts are uploaded to the
  release page, and the merged checksum file is committed with the release.
  Only this machine's target can be built here.

  ## Options

    * `--out DIR` - where to write the artifact (default `_build/nif_artifacts`)
    * `--checksum-file PATH` - default the project's checksum file
    * `--no-checksum` - only write the artifact
  """
  use Mix.Task

  alias SnakepitNif.Precompiled

  @switches [out: :string, checksum_file: :string, checksum: :boolean]

  @impl true
  def run(argv) do
    {opts, _rest, invalid} = OptionParser.parse(argv, strict: @switches)
    if invalid != [], do: Mix.raise("unknown option: #{inspect(invalid)}")
    root = Path.dirname(Mix.Project.project_file())
    so = Mix.Tasks.Compile.SnakepitNif.target(root)

    File.regular?(so) ||
      Mix.raise("no NIF at #{so}: build it first (SNAKEPIT_TELEMETRY_BUILD=1 mix compile)")

    target =
      case Precompiled.target() do
        {:ok, t} -> t
        {:error, reason} -> Mix.raise("no artifact name for this machine: #{inspect(reason)}")
      end

    name =
      Precompiled.artifact_name(Mix.Project.config()[:version], Precompiled.nif_version(), target)

    out = Path.expand(opts[:out] || Path.join(root, "_build/nif_artifacts"))
    {path, sum} = Precompiled.package(so, out, name)
    Mix.shell().info("#{path}\n  #{sum}")

    if Keyword.get(opts, :checksum, true) do
      file_root =
        if file = opts[:checksum_file], do: {:file, Path.expand(file)}, else: {:root, root}

      write(file_root, name, sum)
    end
  end

  defp write({:root, root}, name, sum),
    do: Precompiled.write_checksums(root, Map.put(Precompiled.read_checksums(root), name, sum))

  defp write({:file, file}, name, sum) do
    dir = Path.dirname(file)
    existing = if File.exists?(file), do: elem(Code.eval_file(file), 0), else: %{}
    body = Map.put(existing, name, sum)
    Precompiled.write_checksums(dir, body)
    default = Precompiled.checksum_path(dir)
    if default != file, do: File.rename!(default, file)
  end
end
