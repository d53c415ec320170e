defmodule Snakepit.TLS do
  @moduledoc """
  TLS to a worker on another host, and the rule for plain text.

  Options (`tls:` of `GrpcStream.register_worker/3`, `Snakepit.GRPC.Client.connect/2`
  and an attached `Snakepit.GRPCWorker`), each a file path or PEM text:

    * `:ca_file` / `:ca` - the CA that signed the worker's certificate
      (required: the server certificate is verified against it alone)
    * `:cert_file` / `:cert` and `:key_file` / `:key` - our client
      certificate and key, for a worker that requires them (mTLS)
    * `:server_name` - the name to verify, when it is not the endpoint's host

  Files are read when the option is checked (each at most 256 KiB). The
  NIF speaks TLS with rustls; the worker uses grpcio's SSL credentials
  (`grpc_server.py --tls-cert --tls-key [--tls-client-ca]`).

  Plain text is allowed only to loopback addresses (`localhost`,
  `127.0.0.0/8`, `[::1]`); any other host needs `tls:` or an explicit
  `insecure: true`, else `{:error, {:insecure_endpoint, endpoint}}`.
  """

  defstruct [:ca, :cert, :key, :server_name]

  @type t :: %__MODULE__{
          ca: binary,
          cert: binary | nil,
          key: binary | nil,
          server_name: String.t() | nil
        }

  defimpl Inspect do
    def inspect(tls, _opts) do
      "#Snakepit.TLS<server_name: #{Kernel.inspect(tls.server_name)}, " <>
        "client_cert: #{tls.cert != nil}, key: redacted>"
    end
  end

  @max_pem 256 * 1024
  @keys [:ca, :ca_file, :cert, :cert_file, :key, :key_file, :server_name]

  @doc "Checks (and reads) `tls:` options: `{:ok, t | nil}` or `{:error, {:invalid_option, {:tls, why}}}`."
  @spec options(term) :: {:ok, t | nil} | {:error, term}
  def options(nil), do: {:ok, nil}
  def options(%__MODULE__{} = tls), do: {:ok, tls}

  def options(opts) when is_list(opts) do
    cond do
      not Keyword.keyword?(opts) -> invalid("a keyword list")
      bad = Enum.find(Keyword.keys(opts), &(&1 not in @keys)) -> invalid({:unknown_key, bad})
      true -> build(opts)
    end
  end

  def options(_other), do: invalid("a keyword list")

  defp build(opts) do
    with {:ok, ca} <- pem(opts, :ca),
         {:ok, cert} <- pem(opts, :cert),
         {:ok, key} <- pem(opts, :key),
         :ok <- holds(:ca, ca, &certificate?/1),
         :ok <- holds(:cert, cert, &certificate?/1),
         :ok <- holds(:key, key, &private_key?/1),
         {:ok, name} <- server_name(opts[:server_name]) do
      cond do
        ca == nil -> invalid("ca_file (or ca) is required")
        cert == nil != (key == nil) -> invalid("cert and key go together")
        true -> {:ok, %__MODULE__{ca: ca, cert: cert, key: key, server_name: name}}
      end
    end
  end

  defp pem(opts, key) do
    file = :"#{key}_file"

    case {Keyword.get(opts, key), Keyword.get(opts, file)} do
      {nil, nil} -> {:ok, nil}
      {text, nil} when is_binary(text) and byte_size(text) <= @max_pem -> {:ok, text}
      {nil, path} when is_binary(path) -> read(file, path)
      _ -> invalid({key, "one of #{key} (PEM text) or #{file} (a path)"})
    end
  end

  defp read(option, path) do
    with {:ok, %File.Stat{type: :regular, size: size}} when size <= @max_pem <- File.stat(path),
         {:ok, text} <- File.read(path) do
      {:ok, text}
    else
      {:ok, %File.Stat{}} -> invalid({option, "not a regular file of at most 256 KiB"})
      {:error, reason} -> invalid({option, :file.format_error(reason) |> to_string()})
    end
  end

  # What each PEM must hold, checked here so a wrong file is an error at
  # once, not a stream that never connects.
  defp holds(_what, nil, _kind), do: :ok

  defp holds(what, text, kind) do
    entries =
      try do
        :public_key.pem_decode(text)
      rescue
        _ -> []
      end

    if entries != [] and Enum.all?(entries, kind),
      do: :ok,
      else:
        invalid({what, "not a PEM #{if what == :key, do: "private key", else: "certificate"}"})
  end

  defp certificate?({:Certificate, _, _}), do: true
  defp certificate?(_), do: false

  defp private_key?({type, _, _}), do: type in [:RSAPrivateKey, :ECPrivateKey, :PrivateKeyInfo]

  defp server_name(nil), do: {:ok, nil}

  defp server_name(name) when is_binary(name) and byte_size(name) in 1..253 do
    if String.match?(name, ~r/\A[A-Za-z0-9.:-]+\z/),
      do: {:ok, name},
      else: invalid({:server_name, name})
  end

  defp server_name(name), do: invalid({:server_name, inspect(name, limit: 8)})

  defp invalid(why), do: {:error, {:invalid_option, {:tls, why}}}

  @doc "What the NIF reads: `nil`, or `%{ca, cert, key, server_name}`."
  @spec to_nif(t | nil) :: map | nil
  def to_nif(nil), do: nil
  def to_nif(%__MODULE__{} = tls), do: Map.from_struct(tls)

  @doc """
  `:ok` when the transport is allowed: TLS, a loopback host, or
  `insecure: true`; `{:error, {:insecure_endpoint, endpoint}}` otherwise.
  """
  @spec check_transport(String.t(), t | nil, boolean) :: :ok | {:error, term}
  def check_transport(_endpoint, %__MODULE__{}, _insecure), do: :ok
  def check_transport(_endpoint, nil, true), do: :ok

  def check_transport(endpoint, nil, _insecure) do
    if loopback?(endpoint), do: :ok, else: {:error, {:insecure_endpoint, endpoint}}
  end

  @doc "Whether the host of `host:port` is a loopback address."
  @spec loopback?(String.t()) :: boolean
  def loopback?(endpoint) do
    host =
      endpoint
      |> String.replace(~r/:[0-9]+\z/, "")
      |> String.trim_leading("[")
      |> String.trim_trailing("]")

    host == "localhost" or
      case :inet.parse_strict_address(String.to_charlist(host)) do
        {:ok, {127, _, _, _}} -> true
        {:ok, {0, 0, 0, 0, 0, 0, 0, 1}} -> true
        _ -> false
      end
  end
end
