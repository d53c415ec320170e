defmodule Snakepit.PrecompiledNifTest do
  # Precompiled NIFs: the artifact of this machine's build, served over a
  # loopback HTTP server (OTP's httpd), installs a fresh copy of the project
  # that has no cargo on its PATH; a tampered artifact is refused; no
  # artifact for the target, or SNAKEPIT_TELEMETRY_BUILD=1, means a source
  # build (seen here failing for want of cargo, which is the point: it was
  # chosen). Only this machine's target exists here.
  use ExUnit.Case, async: false

  alias SnakepitNif.Precompiled

  @moduletag :tmp_dir
  @moduletag timeout: 600_000

  @library Path.expand("../..", __DIR__)

  describe "naming and choosing" do
    test "targets of the VM's architecture" do
      assert Precompiled.target("x86_64-pc-linux-gnu", false) == {:ok, "x86_64-unknown-linux-gnu"}
      assert Precompiled.target("x86_64-pc-linux-gnu", true) == {:ok, "x86_64-unknown-linux-musl"}

      assert Precompiled.target("aarch64-unknown-linux-gnu", false) ==
               {:ok, "aarch64-unknown-linux-gnu"}

      assert Precompiled.target("x86_64-alpine-linux-musl", false) ==
               {:ok, "x86_64-unknown-linux-musl"}

      assert Precompiled.target("aarch64-apple-darwin23.4.0", false) ==
               {:ok, "aarch64-apple-darwin"}

      assert {:error, {:unsupported_target, _}} =
               Precompiled.target("sparc-sun-solaris2.11", false)

      assert Precompiled.artifact_name("0.1.0", "2.16", "x86_64-unknown-linux-gnu") ==
               "libsnakepit_telemetry_nif-v0.1.0-nif-2.16-x86_64-unknown-linux-gnu.so.tar.gz"
    end

    test "build or download" do
      name = Precompiled.artifact_name("0.1.0", "2.16", "x86_64-unknown-linux-gnu")

      base = %{
        version: "0.1.0",
        env: nil,
        force_build: false,
        checksums: %{name => "sha256:ab"},
        target: {:ok, "x86_64-unknown-linux-gnu"},
        nif_version: "2.16"
      }

      assert Precompiled.decide(base) == {:download, name, "sha256:ab"}
      assert Precompiled.decide(%{base | env: "1"}) == {:build, :forced}
      assert Precompiled.decide(%{base | force_build: true}) == {:build, :configured}
      assert Precompiled.decide(%{base | version: "0.2.0-rc.1"}) == {:build, :prerelease}
      assert {:build, {:no_artifact, _}} = Precompiled.decide(%{base | nif_version: "2.15"})
      assert {:build, {:no_artifact, _}} = Precompiled.decide(%{base | checksums: %{}})

      assert {:build, {:unsupported_target, "x"}} =
               Precompiled.decide(%{base | target: {:error, {:unsupported_target, "x"}}})
    end

    test "an artifact holds the library alone; anything else is refused", %{tmp_dir: dir} do
      so = Path.join(dir, "lib.so")
      File.write!(so, "library bytes")
      {path, sum} = Precompiled.package(so, dir, "a.so.tar.gz")
      assert Precompiled.checksum(File.read!(path)) == sum
      assert {:ok, "library bytes"} = Precompiled.unpack(File.read!(path))

      other = Path.join(dir, "other.tar.gz")
      :ok = :erl_tar.create(String.to_charlist(other), [{~c"../../evil.so", "x"}], [:compressed])
      assert {:error, {:no_library_in_artifact, _}} = Precompiled.unpack(File.read!(other))
      assert {:error, {:bad_artifact, _}} = Precompiled.unpack("not a tarball")
    end
  end

  defp copy_project(to) do
    # Tracked and new (not ignored) files: what a commit of this tree would hold.
    {files, 0} =
      System.cmd("git", ["ls-files", "--cached", "--others", "--exclude-standard"], cd: @library)

    for file <- String.split(files, "\n", trim: true),
        File.regular?(Path.join(@library, file)) do
      dest = Path.join(to, file)
      File.mkdir_p!(Path.dirname(dest))
      File.cp!(Path.join(@library, file), dest)
    end
  end

  # The environment of a machine without Rust: cargo is not on PATH.
  defp no_cargo_env(extra) do
    path =
      System.get_env("PATH")
      |> String.split(":")
      |> Enum.reject(&File.exists?(Path.join(&1, "cargo")))
      |> Enum.join(":")

    [
      {"PATH", path},
      {"MIX_ENV", "dev"},
      {"MIX_EXS", nil},
      {"MIX_BUILD_PATH", nil},
      {"SNAKEPIT_CARGO", nil} | extra
    ]
  end

  defp mix(dir, args, env),
    do: System.cmd("mix", args, cd: dir, env: no_cargo_env(env), stderr_to_stdout: true)

  @smoke ~S"""
  python = System.fetch_env!("SMOKE_PYTHON")
  ref = :telemetry_test.attach_event_handlers(self(), [[:snakepit, :python, :call, :stop]])
  {:ok, w} = Snakepit.GRPCWorker.start_link(id: "smoke", python: python)
  {:ok, _} = Snakepit.GRPCWorker.execute(w, "ping", %{}, correlation_id: "smoke-1")

  receive do
    {[:snakepit, :python, :call, :stop], ^ref, _, %{correlation_id: "smoke-1"}} -> IO.puts("SMOKE OK")
  after
    10_000 -> raise "no event"
  end
  """

  test "a fresh copy installs the served artifact without cargo; tampering and missing artifacts are caught",
       %{tmp_dir: tmp} do
    copy = Path.join(tmp, "project")
    served = Path.join(tmp, "served")
    copy_project(copy)
    checksums = Precompiled.checksum_path(copy)

    # The artifact of this machine's build, and its checksum in the copy.
    printed =
      ExUnit.CaptureIO.capture_io(fn ->
        Mix.Tasks.Snakepit.Nif.Package.run(["--out", served, "--checksum-file", checksums])
      end)

    assert printed =~ "sha256:"
    {:ok, target} = Precompiled.target()

    name =
      Precompiled.artifact_name(Mix.Project.config()[:version], Precompiled.nif_version(), target)

    assert %{^name => "sha256:" <> _} = Precompiled.read_checksums(copy)

    {:ok, _} = Application.ensure_all_started(:inets)

    {:ok, httpd} =
      :inets.start(:httpd,
        port: 0,
        server_name: ~c"artifacts",
        server_root: String.to_charlist(tmp),
        document_root: String.to_charlist(served),
        bind_address: {127, 0, 0, 1}
      )

    on_exit(fn -> :inets.stop(:httpd, httpd) end)
    url = "http://127.0.0.1:#{:httpd.info(httpd)[:port]}"
    nif = Path.join(copy, "priv/native/snakepit_telemetry_nif.so")

    {out, status} = mix(copy, ["compile"], [{"SNAKEPIT_TELEMETRY_NIF_URL", url}])
    assert status == 0, out
    assert out =~ "using the precompiled #{name}"
    refute out =~ "cargo build"

    assert File.read!(nif) ==
             File.read!(Path.join(@library, "priv/native/snakepit_telemetry_nif.so"))

    python = Path.join(@library, ".venv/bin/python")

    {out, status} =
      mix(copy, ["run", "-e", @smoke], [
        {"SMOKE_PYTHON", python},
        {"SNAKEPIT_TELEMETRY_NIF_URL", url}
      ])

    assert status == 0 and out =~ "SMOKE OK", out

    # A tampered artifact: refused, nothing installed.
    File.rm!(nif)
    path = Path.join(served, name)
    mirror = Path.join(tmp, "mirror")
    File.mkdir_p!(mirror)
    File.cp!(path, Path.join(mirror, name))
    File.write!(path, File.read!(path) <> "tampered")
    {out, status} = mix(copy, ["compile"], [{"SNAKEPIT_TELEMETRY_NIF_URL", url}])
    assert status != 0 and out =~ "checksum mismatch for #{name}", out
    refute File.exists?(nif)

    # An air-gapped mirror (file://) with the right artifact.
    {out, status} = mix(copy, ["compile"], [{"SNAKEPIT_TELEMETRY_NIF_URL", "file://" <> mirror}])
    assert status == 0 and File.exists?(nif), out

    # Forced: a source build is chosen (and fails here: no cargo on PATH).
    {out, status} = mix(copy, ["compile"], [{"SNAKEPIT_TELEMETRY_BUILD", "1"}])
    assert status != 0 and out =~ "building from source (SNAKEPIT_TELEMETRY_BUILD is set)", out
    assert out =~ "cargo was not found"

    # No artifact for this target: a real source build (cargo back on PATH;
    # the library's target folder, so only the workspace's own crates build).
    Precompiled.write_checksums(copy, %{
      String.replace(name, target, "aarch64-unknown-linux-gnu") => "sha256:00"
    })

    File.rm(nif)

    {out, status} =
      System.cmd("mix", ["compile"],
        cd: copy,
        env: [
          {"MIX_ENV", "dev"},
          {"MIX_EXS", nil},
          {"CARGO_TARGET_DIR", Path.join(@library, "target")}
        ],
        stderr_to_stdout: true
      )

    assert status == 0 and out =~ "building from source (no precompiled #{name}", out
    assert out =~ "cargo build --profile release"
    {out, status} = mix(copy, ["run", "-e", @smoke], [{"SMOKE_PYTHON", python}])
    assert status == 0 and out =~ "SMOKE OK", out
  end
end
