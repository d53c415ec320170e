defmodule Snakepit.Telemetry.GrpcStream.Registration do
  @moduledoc false
  # Checks the arguments of `GrpcStream.register_worker/3`: every string is
  # bounded, every number ranged, every option known; the result is what the
  # NIF's stream config reads. Runs in GrpcStream itself, so a raw
  # `GenServer.call` is held to the same rules as the public function.

  @max_host_bytes 253
  @max_id_bytes 128
  @max_name_bytes 128
  @host ~r/\A(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])\z/
  @ms 1..3_600_000
  @ranges %{
    max_batch: 1..65_536,
    credit: 1..1_024,
    connect_timeout_ms: @ms,
    open_timeout_ms: @ms,
    backoff_initial_ms: @ms,
    backoff_max_ms: @ms,
    keepalive_interval_ms: 1_000..86_400_000,
    keepalive_timeout_ms: 1_000..3_600_000,
    max_frame_bytes: 1_024..(64 * 1024 * 1024),
    window_bytes: (16 * 1024)..(16 * 1024 * 1024)
  }
  # Every tuning value the NIF reads, with its default: the one place both
  # live (the NIF refuses a missing or out-of-range value, it never clamps).
  @defaults %{
    rpc: :auto,
    max_batch: Snakepit.Telemetry.Catalog.defaults().max_batch_events,
    credit: 4,
    connect_timeout_ms: 5_000,
    open_timeout_ms: 5_000,
    backoff_initial_ms: 100,
    backoff_max_ms: 5_000,
    # grpcio's default server policy: pings no more often than every 5
    # minutes while no data flows, else GOAWAY "too_many_pings".
    keepalive_interval_ms: 330_000,
    keepalive_timeout_ms: 20_000,
    max_frame_bytes: Snakepit.Telemetry.Catalog.defaults().max_frame_bytes,
    window_bytes: 256 * 1024
  }
  @tuning [:rpc, :token, :tls, :insecure | Map.keys(@ranges)]

  @doc "The default of each tuning option."
  def defaults, do: @defaults

  @type t :: %{endpoint: String.t(), ctx: map, opts: map, owner: pid | nil}

  @doc "The stream tuning options `register_worker/3` accepts (besides `:owner`)."
  def tuning, do: @tuning

  @spec new(term, term, term) :: {:ok, t} | {:error, term}
  def new(endpoint, ctx, opts) do
    with {:ok, endpoint} <- endpoint(endpoint),
         {:ok, ctx} <- ctx(ctx),
         {:ok, opts} <- opts(opts) do
      owner = Keyword.get(opts, :owner)
      defaults = Application.get_env(:snakepit_telemetry, :grpc_stream, [])

      with {:ok, defaults} <- opts(if(Keyword.keyword?(defaults), do: defaults, else: [])) do
        tuning =
          @defaults
          |> Map.merge(defaults |> Keyword.merge(opts) |> Keyword.take(@tuning) |> Map.new())

        with :ok <- Snakepit.TLS.check_transport(endpoint, tuning[:tls], tuning[:insecure]),
             do: {:ok, %{endpoint: endpoint, ctx: ctx, opts: tuning, owner: owner}}
      end
    end
  end

  @doc """
  `host:port`: a host name, IPv4 or bracketed IPv6 address, and a port; or a
  channel map with `:host` and `:port` (what the reference's `GRPCWorker`
  passes).
  """
  @spec endpoint(term) :: {:ok, String.t()} | {:error, term}
  def endpoint(endpoint)
      when is_binary(endpoint) and byte_size(endpoint) <= @max_host_bytes + 6 do
    with [port, host] <- endpoint |> String.split(":") |> split_port(),
         true <- byte_size(host) <= @max_host_bytes and Regex.match?(@host, host),
         {port, ""} when port in 1..65_535 <- Integer.parse(port),
         true <- String.match?(endpoint, ~r/:[0-9]{1,5}\z/) do
      {:ok, endpoint}
    else
      _ -> {:error, {:invalid_endpoint, endpoint}}
    end
  end

  # The reference's call shape: a channel (a `GRPC.Channel` struct or any
  # map) with `:host` and `:port`.
  def endpoint(%{host: host, port: port} = channel)
      when is_binary(host) and is_integer(port) and port in 1..65_535 do
    host = if String.contains?(host, ":"), do: "[#{host}]", else: host

    case endpoint("#{host}:#{port}") do
      {:ok, _} = ok -> ok
      {:error, _} -> {:error, {:invalid_endpoint, bounded(channel)}}
    end
  end

  def endpoint(other), do: {:error, {:invalid_endpoint, bounded(other)}}

  defp split_port(parts) when length(parts) >= 2 do
    {host, [port]} = Enum.split(parts, -1)
    [port, Enum.join(host, ":")]
  end

  defp split_port(_), do: :error

  defp ctx(ctx) when is_map(ctx) or is_list(ctx) do
    ctx = if is_map(ctx) or Keyword.keyword?(ctx), do: Map.new(ctx), else: %{}

    with {:ok, id} <- worker_id(Map.get(ctx, :worker_id)),
         {:ok, pool} <- pool_name(Map.get(ctx, :pool_name)),
         {:ok, pid} <- optional_int(:python_pid, Map.get(ctx, :python_pid), 1..4_294_967_295),
         {:ok, port} <- optional_int(:python_port, Map.get(ctx, :python_port), 1..65_535) do
      {:ok, %{worker_id: id, pool_name: pool, python_pid: pid, python_port: port}}
    end
  end

  defp ctx(other), do: {:error, {:invalid_worker_ctx, bounded(other)}}

  @doc "A worker id: a non-empty UTF-8 string of at most #{@max_id_bytes} bytes."
  def worker_id(id)
      when is_binary(id) and byte_size(id) > 0 and byte_size(id) <= @max_id_bytes do
    if String.valid?(id),
      do: {:ok, id},
      else: {:error, {:invalid_worker_ctx, {:worker_id, bounded(id)}}}
  end

  def worker_id(nil), do: {:error, {:invalid_worker_ctx, :worker_id_required}}
  def worker_id(other), do: {:error, {:invalid_worker_ctx, {:worker_id, bounded(other)}}}

  defp pool_name(nil), do: {:ok, nil}
  defp pool_name(name) when is_atom(name), do: {:ok, name}

  defp pool_name(name) when is_binary(name) and byte_size(name) <= @max_name_bytes do
    if String.valid?(name), do: {:ok, name}, else: {:error, {:invalid_pool_name, bounded(name)}}
  end

  defp pool_name(other), do: {:error, {:invalid_worker_ctx, {:pool_name, bounded(other)}}}

  defp optional_int(_key, nil, _range), do: {:ok, nil}

  defp optional_int(key, n, range) do
    if is_integer(n) and n in range,
      do: {:ok, n},
      else: {:error, {:invalid_worker_ctx, {key, bounded(n)}}}
  end

  defp opts(opts) when is_list(opts) do
    if Keyword.keyword?(opts) do
      with {:ok, opts} <- token_opt(opts) do
        case Enum.find(opts, &(not valid_opt?(&1))) do
          nil -> {:ok, opts}
          bad -> {:error, {:invalid_option, bounded(bad)}}
        end
      end
    else
      {:error, {:invalid_options, bounded(opts)}}
    end
  end

  defp opts(other), do: {:error, {:invalid_options, bounded(other)}}

  # The token is held as a Snakepit.Auth.Token (it never prints) and checked
  # without echoing it in an error.
  defp token_opt(opts) do
    with {:ok, token} <- Snakepit.Auth.token(Keyword.get(opts, :token)),
         {:ok, tls} <- Snakepit.TLS.options(Keyword.get(opts, :tls)) do
      opts = if token, do: Keyword.put(opts, :token, token), else: opts
      {:ok, if(tls, do: Keyword.put(opts, :tls, tls), else: opts)}
    end
  end

  defp valid_opt?({:rpc, v}), do: v in [:auto, :batched, :stock]
  defp valid_opt?({:token, v}), do: is_nil(v) or is_struct(v, Snakepit.Auth.Token)
  defp valid_opt?({:tls, v}), do: is_nil(v) or is_struct(v, Snakepit.TLS)
  defp valid_opt?({:insecure, v}), do: is_boolean(v)
  defp valid_opt?({:owner, v}), do: is_nil(v) or (is_pid(v) and node(v) == node())
  defp valid_opt?({k, v}) when is_map_key(@ranges, k), do: is_integer(v) and v in @ranges[k]
  defp valid_opt?(_), do: false

  # An error reason echoes the caller's argument; a huge one is cut.
  defp bounded(term) when is_binary(term) and byte_size(term) > 256,
    do: binary_part(term, 0, 256) <> "..."

  defp bounded(term) when is_atom(term) or is_number(term) or is_pid(term), do: term
  defp bounded(term) when is_binary(term), do: term
  defp bounded(term), do: inspect(term, limit: 8, printable_limit: 256)
end
