defmodule SnakepitNif.Precompiled do
  @moduledoc false
  # Precompiled NIFs, following rustler_precompiled's conventions so users
  # recognise them (Hex is not reachable here, so the project's own compiler
  # implements the contract): artifacts named
  # lib<crate>-v<version>-nif-<nif version>-<target>.so.tar.gz (one .so
  # inside), a checksum file committed with each release
  # (checksum-Elixir.Snakepit.Telemetry.Native.exs, SHA-256 per artifact),
  # downloaded from a base URL (http, https or file://) and refused when the
  # checksum does not match. Lives outside lib/ with the compiler that uses
  # it (both exist before the project compiles).

  @crate "snakepit_telemetry_nif"
  @checksum_file "checksum-Elixir.Snakepit.Telemetry.Native.exs"
  @default_base "https://github.com/snakepit-dev/snakepit_telemetry/releases/download/v"

  def crate, do: @crate

  @doc "The checksum file of a project root."
  def checksum_path(root), do: Path.join(root, @checksum_file)

  @doc """
  The Rust target triple of the running VM (SNAKEPIT_TELEMETRY_TARGET
  overrides it, for a release job that builds another libc's artifact), or
  {:error, {:unsupported_target, arch}}.
  """
  def target do
    case System.get_env("SNAKEPIT_TELEMETRY_TARGET") do
      nil -> target(to_string(:erlang.system_info(:system_architecture)), musl?())
      triple -> {:ok, triple}
    end
  end

  def target(arch, musl?) do
    case String.split(arch, "-") do
      [cpu, _vendor, "linux", abi | _] when cpu in ["x86_64", "aarch64"] ->
        {:ok,
         "#{cpu}-unknown-linux-#{if musl? or String.starts_with?(abi, "musl"), do: "musl", else: "gnu"}"}

      [cpu, _vendor, "linux"] when cpu in ["x86_64", "aarch64"] ->
        {:ok, "#{cpu}-unknown-linux-#{if musl?, do: "musl", else: "gnu"}"}

      [cpu, "apple", "darwin" <> _ | _] when cpu in ["x86_64", "aarch64"] ->
        {:ok, "#{cpu}-apple-darwin"}

      _ ->
        {:error, {:unsupported_target, arch}}
    end
  end

  defp musl?, do: Path.wildcard("/lib/ld-musl-*") != []

  @doc "The NIF version of the running VM, e.g. \"2.16\"."
  def nif_version, do: to_string(:erlang.system_info(:nif_version))

  @doc "The artifact file name (rustler_precompiled's convention)."
  def artifact_name(version, nif_version, target),
    do: "lib#{@crate}-v#{version}-nif-#{nif_version}-#{target}.so.tar.gz"

  @doc "The release checksums: %{artifact name => \"sha256:<hex>\"} (empty without a file)."
  def read_checksums(root) do
    path = checksum_path(root)

    if File.exists?(path) do
      {map, _} = Code.eval_file(path)

      unless is_map(map) and Enum.all?(map, fn {k, v} -> is_binary(k) and is_binary(v) end),
        do: raise("#{path} must hold a map of artifact names to \"sha256:<hex>\"")

      map
    else
      %{}
    end
  end

  @doc "Writes the checksum file (sorted, as rustler_precompiled writes it)."
  def write_checksums(root, map) do
    body =
      map
      |> Enum.sort()
      |> Enum.map_join("", fn {k, v} -> "  #{inspect(k)} => #{inspect(v)},\n" end)

    File.write!(checksum_path(root), "%{\n" <> body <> "}\n")
  end

  @doc """
  Build from source or download? `{:download, artifact, checksum}` or
  `{:build, reason}`, reason one of :forced (SNAKEPIT_TELEMETRY_BUILD),
  :configured (config :snakepit_telemetry, :force_build), :prerelease,
  {:no_artifact, name}, {:unsupported_target, arch}.
  """
  def decide(%{
        version: version,
        env: env,
        force_build: force,
        checksums: checksums,
        target: target,
        nif_version: nif
      }) do
    cond do
      env in ["1", "true"] ->
        {:build, :forced}

      force == true ->
        {:build, :configured}

      String.contains?(version, "-") ->
        {:build, :prerelease}

      match?({:error, _}, target) ->
        {:build, elem(target, 1)}

      true ->
        {:ok, triple} = target
        name = artifact_name(version, nif, triple)

        case Map.fetch(checksums, name) do
          {:ok, sum} -> {:download, name, sum}
          :error -> {:build, {:no_artifact, name}}
        end
    end
  end

  @doc "The base URL: SNAKEPIT_TELEMETRY_NIF_URL, config :snakepit_telemetry, :nif_base_url, or the release page."
  def base_url(version) do
    System.get_env("SNAKEPIT_TELEMETRY_NIF_URL") ||
      Application.get_env(:snakepit_telemetry, :nif_base_url) ||
      @default_base <> version
  end

  @doc "Fetches a URL (http, https with the system's CAs and proxy settings, or file://)."
  def fetch("file://" <> path), do: File.read(path)

  def fetch("http" <> _ = url) do
    {:ok, _} = Application.ensure_all_started(:inets)
    {:ok, _} = Application.ensure_all_started(:ssl)
    profile = :snakepit_nif
    _ = :inets.start(:httpc, profile: profile)
    :ok = :httpc.set_options(proxy_options(), profile)
    request = {String.to_charlist(url), [{~c"user-agent", ~c"snakepit_nif"}]}
    http = [timeout: 120_000, connect_timeout: 20_000, ssl: ssl_options(), autoredirect: true]

    case :httpc.request(:get, request, http, [body_format: :binary], profile) do
      {:ok, {{_, 200, _}, _headers, body}} -> {:ok, body}
      {:ok, {{_, status, _}, _headers, _}} -> {:error, {:http_status, status}}
      {:error, reason} -> {:error, reason}
    end
  end

  def fetch(url), do: {:error, {:unsupported_url, url}}

  defp proxy_options do
    for {key, vars} <- [
          proxy: ["http_proxy", "HTTP_PROXY"],
          https_proxy: ["https_proxy", "HTTPS_PROXY"]
        ],
        proxy = Enum.find_value(vars, &System.get_env/1),
        %URI{host: host, port: port} when is_binary(host) <- [URI.parse(proxy)] do
      {key, {{String.to_charlist(host), port}, no_proxy()}}
    end
  end

  defp no_proxy do
    (System.get_env("no_proxy") || System.get_env("NO_PROXY") || "")
    |> String.split(",", trim: true)
    |> Enum.map(&String.to_charlist(String.trim(&1)))
  end

  defp ssl_options do
    cacerts =
      case System.get_env("SNAKEPIT_TELEMETRY_CACERTFILE") do
        nil -> [cacerts: :public_key.cacerts_get()]
        file -> [cacertfile: String.to_charlist(file)]
      end

    [
      verify: :verify_peer,
      depth: 4,
      customize_hostname_check: [match_fun: :public_key.pkix_verify_hostname_match_fun(:https)]
    ] ++ cacerts
  end

  @doc "\"sha256:<hex>\" of a binary."
  def checksum(binary),
    do: "sha256:" <> Base.encode16(:crypto.hash(:sha256, binary), case: :lower)

  @doc "The library inside an artifact (read in memory: no entry is written to disk by name)."
  def unpack(tar_gz) do
    case :erl_tar.extract({:binary, tar_gz}, [:compressed, :memory]) do
      {:ok, files} ->
        want = ~c"lib#{@crate}.so"

        case List.keyfind(files, want, 0) do
          {_, so} -> {:ok, so}
          nil -> {:error, {:no_library_in_artifact, Enum.map(files, &elem(&1, 0))}}
        end

      {:error, reason} ->
        {:error, {:bad_artifact, reason}}
    end
  end

  @doc "Packages a built library as the artifact; returns {path, checksum}."
  def package(so_path, out_dir, name) do
    File.mkdir_p!(out_dir)
    path = Path.join(out_dir, name)
    entry = {~c"lib#{@crate}.so", File.read!(so_path)}
    :ok = :erl_tar.create(String.to_charlist(path), [entry], [:compressed])
    {path, checksum(File.read!(path))}
  end
end
