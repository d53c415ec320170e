defmodule Snakepit.Test.RemoteHost do
  @moduledoc false
  # A "second host" on this machine for the TLS tests: a network namespace
  # joined to ours by a veth pair (needs root and a kernel that allows
  # namespaces), certificates made at run time with the openssl CLI, and a
  # real Python worker started inside the namespace.

  @ready "SNAKEPIT_READY "
  @host_ip "10.213.77.1"
  @worker_ip "10.213.77.2"

  def worker_ip, do: @worker_ip

  @doc "`:ok`, or `{:error, why}` when namespaces cannot be made here."
  def available? do
    name = "snkprobe#{System.os_time(:microsecond) |> rem(1_000_000)}"

    with {_, 0} <- ip(["netns", "add", name]),
         {_, 0} <- ip(["netns", "delete", name]) do
      :ok
    else
      {out, status} -> {:error, "ip netns add failed (#{status}): #{String.trim(out)}"}
    end
  rescue
    e in ErlangError -> {:error, "cannot run ip: #{Exception.message(e)}"}
  end

  @doc "Creates the namespace and the veth pair; removes them at test exit."
  def netns! do
    suffix = System.unique_integer([:positive]) |> rem(100_000)
    ns = "snk#{suffix}"
    {host_if, worker_if} = {"snkh#{suffix}", "snkw#{suffix}"}

    steps = [
      ["netns", "add", ns],
      ["link", "add", host_if, "type", "veth", "peer", "name", worker_if],
      ["link", "set", worker_if, "netns", ns],
      ["addr", "add", "#{@host_ip}/30", "dev", host_if],
      ["link", "set", host_if, "up"],
      ["-n", ns, "addr", "add", "#{@worker_ip}/30", "dev", worker_if],
      ["-n", ns, "link", "set", worker_if, "up"],
      ["-n", ns, "link", "set", "lo", "up"]
    ]

    ExUnit.Callbacks.on_exit(fn ->
      ip(["link", "delete", host_if])
      ip(["netns", "delete", ns])
    end)

    for step <- steps do
      case ip(step) do
        {_, 0} -> :ok
        {out, status} -> raise "ip #{Enum.join(step, " ")} failed (#{status}): #{out}"
      end
    end

    ns
  end

  defp ip(args), do: System.cmd("ip", args, stderr_to_stdout: true)

  @doc """
  A CA, a server certificate for the worker's address, a client
  certificate, and a second CA that signed neither; returns their paths.
  """
  def certificates!(dir) do
    File.mkdir_p!(dir)
    path = &Path.join(dir, &1)
    ca!(path, "ca")
    ca!(path, "other_ca")
    leaf!(path, "server", "ca", "subjectAltName=IP:#{@worker_ip}\nextendedKeyUsage=serverAuth")
    leaf!(path, "client", "ca", "extendedKeyUsage=clientAuth")

    for name <- ~w(ca other_ca server client), into: %{} do
      {String.to_atom(name), %{pem: path.("#{name}.pem"), key: path.("#{name}.key")}}
    end
  end

  # A new P-256 key (name.key) and, with "-x509", a self-signed certificate.
  @new_key ~w(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

  defp ca!(path, name) do
    openssl!(
      ["req", "-x509" | @new_key] ++
        ["-keyout", path.("#{name}.key"), "-out", path.("#{name}.pem"), "-days", "2"] ++
        ["-subj", "/CN=snakepit test #{name}", "-addext", "basicConstraints=critical,CA:TRUE"] ++
        ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    )
  end

  defp leaf!(path, name, ca, extensions) do
    ext = path.("#{name}.ext")
    File.write!(ext, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n#{extensions}\n")
    csr = path.("#{name}.csr")

    openssl!(
      ["req" | @new_key] ++ ["-keyout", path.("#{name}.key"), "-out", csr, "-subj", "/CN=#{name}"]
    )

    openssl!(
      ["x509", "-req", "-in", csr, "-CA", path.("#{ca}.pem"), "-CAkey", path.("#{ca}.key")] ++
        ["-CAcreateserial", "-out", path.("#{name}.pem"), "-days", "2", "-extfile", ext]
    )
  end

  defp openssl!(args) do
    {out, status} = System.cmd("openssl", args, stderr_to_stdout: true)
    if status != 0, do: raise("openssl #{Enum.join(args, " ")} failed: #{out}")
  end

  @doc """
  Starts a real worker inside `ns`, listening on the worker address with
  TLS (`tls_args`, e.g. `--tls-cert ... --tls-key ...`) and `token`;
  returns %{endpoint, os_pid}. Killed at test exit.
  """
  def start_worker!(ns, token, tls_args) do
    script = Path.join(Snakepit.Python.package_dir(), "grpc_server.py")

    args =
      ["netns", "exec", ns, Snakepit.Python.executable(), script, "--host", @worker_ip] ++
        ["--port", "0", "--demo-tools", "--auth-token-stdin", "--sample-interval-ms", "0"] ++
        tls_args

    started =
      Snakepit.OSProcess.spawn_owned(System.find_executable("ip"), args, @ready,
        env: Snakepit.Python.env(),
        stdin: [Snakepit.Auth.reveal(token), ?\n],
        timeout: 20_000
      )

    case started do
      {:ok, %{os_pid: os_pid, ready: json}} ->
        ExUnit.Callbacks.on_exit(fn -> Snakepit.OSProcess.signal(os_pid, "KILL") end)
        [_, p] = Regex.run(~r/"port":\s*(\d+)/, json)
        %{endpoint: "#{@worker_ip}:#{p}", os_pid: os_pid}

      {:error, {:exited, status, lines}} ->
        raise "worker in #{ns} exited #{status}:\n#{Enum.join(lines, "\n")}"

      {:error, reason} ->
        raise "worker in #{ns} not ready: #{inspect(reason)}"
    end
  end
end
