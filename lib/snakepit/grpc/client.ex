defmodule Snakepit.GRPC.Client do
  @moduledoc """
  `ExecuteTool` calls to a Python worker, made by the NIF on its own threads:
  the caller waits in `receive` with a timeout, no scheduler is blocked.

  Parameters are encoded as the reference does: each value as JSON inside a
  `google.protobuf.Any` (type URL `type.googleapis.com/google.protobuf.StringValue`);
  results are decoded likewise (JSON objects become maps with string keys).

  A correlation id (given, or generated) travels as gRPC metadata
  `x-snakepit-correlation-id` and as request metadata `correlation_id`, so
  every Python event of the call carries it. Each call emits
  `[:snakepit, :grpc, :call, :start | :stop | :exception]`.
  """

  alias Snakepit.{Auth, TLS}
  alias Snakepit.Telemetry.{Naming, Native}
  alias Snakepit.Telemetry.GrpcStream.Registration

  @type channel :: reference
  @default_timeout Snakepit.Telemetry.Catalog.defaults().tool_timeout_ms
  @max_timeout 86_400_000
  @max_correlation_id Snakepit.Telemetry.Catalog.limits().max_correlation_id_bytes

  @doc """
  Opens a (lazily connected) channel to `host:port`.

  ## Options

    * `:token` - the worker's token (`Snakepit.Auth`), sent on every call;
      `nil` (default) for a worker started with `--no-auth`
    * `:tls` - TLS options (`Snakepit.TLS`); plain text only to loopback
      hosts unless `insecure: true`
    * `:connect_timeout_ms` - default 5000
  """
  @spec connect(String.t(), keyword) :: {:ok, channel} | {:error, term}
  def connect(endpoint, opts \\ []) do
    with true <- Keyword.keyword?(opts) || {:error, {:invalid_options, opts}},
         {:ok, endpoint} <- Registration.endpoint(endpoint),
         {:ok, timeout} <- positive(opts, :connect_timeout_ms, 5_000, @max_timeout),
         {:ok, token} <- Auth.token(Keyword.get(opts, :token)),
         {:ok, tls} <- TLS.options(Keyword.get(opts, :tls)),
         :ok <- TLS.check_transport(endpoint, tls, Keyword.get(opts, :insecure) == true) do
      Native.channel_open(endpoint, timeout, Auth.reveal(token), TLS.to_nif(tls))
    end
  end

  @doc """
  Sends `Ping` to the worker behind `channel` (a health check that runs no
  tool): `{:ok, %{message: "pong: " <> message, round_trip_us: n}}`, or
  `{:error, reason}` as `execute_tool/4` (`{:grpc_error, "Unauthenticated", _}`
  with a wrong token).

  Options: `:message` (default `"ping"`, at most 1 KiB), `:timeout` (ms,
  default 5000).
  """
  @spec ping(channel, keyword) :: {:ok, map} | {:error, term}
  def ping(channel, opts \\ []) do
    with true <- is_reference(channel) || {:error, {:invalid_channel, channel}},
         true <- Keyword.keyword?(opts) || {:error, {:invalid_options, opts}},
         {:ok, message} <- text(opts, :message, fn -> "ping" end, 1024),
         {:ok, timeout} <- positive(opts, :timeout, 5_000, @max_timeout) do
      ref = make_ref()

      try do
        :ok = Native.ping_call(channel, message, timeout, self(), ref)

        receive do
          {:snakepit_ping_result, ^ref, {:ok, reply, us}} ->
            {:ok, %{message: reply, round_trip_us: us}}

          {:snakepit_ping_result, ^ref, error} ->
            error
        after
          timeout + 1_000 -> {:error, :timeout}
        end
      rescue
        e in ArgumentError -> {:error, {:invalid_argument, Exception.message(e)}}
      end
    end
  end

  @doc """
  Calls `tool` with `params` (a map) on the worker behind `channel`.

  ## Options

    * `:correlation_id` - at most 128 bytes (the catalog's
      `max_correlation_id_bytes`; a longer one is refused with
      `{:error, {:correlation_id_too_long, 128}}`, since the worker would drop
      every event of the call); defaults to a new random id
    * `:timeout` - milliseconds (default #{@default_timeout}, at most one day)
    * `:session_id` - at most 256 bytes
    * `:metadata` - a map of strings (at most 64 entries of 4 KiB)
    * `:worker_id` - put on the `[:snakepit, :grpc, :call, ...]` events
    * `:traceparent` - a W3C trace context (`"00-<32 hex>-<16 hex>-<2 hex>"`):
      with tracing set up in the worker (`telemetry.setup_tracing()`), the
      call's Python spans are its children, so a trace started in Elixir goes
      on in Python

  Returns `{:ok, result}` or `{:error, reason}` where reason is
  `{:tool_error, message}`, `{:grpc_error, code, message}`, `:timeout`,
  `{:invalid_params, text}` (also for parameters over 4 MiB),
  `{:correlation_id_too_long, max}` or `{:invalid_option, option}`. Arguments are checked before the call starts:
  every `[:snakepit, :grpc, :call, :start]` event has its `:stop` or
  `:exception`.
  """
  @spec execute_tool(channel, String.t(), map, keyword) :: {:ok, term} | {:error, term}
  def execute_tool(channel, tool, params, opts \\ []) do
    with {:ok, call} <- validate(channel, tool, params, opts) do
      run(call)
    end
  end

  defp validate(channel, tool, params, opts) do
    cond do
      not is_reference(channel) -> {:error, {:invalid_channel, channel}}
      not text?(tool, 256) or tool == "" -> {:error, {:invalid_tool, tool}}
      not is_map(params) -> {:error, {:invalid_params, "params must be a map"}}
      not Keyword.keyword?(opts) -> {:error, {:invalid_options, opts}}
      true -> call_options(channel, tool, params, opts)
    end
  end

  defp call_options(channel, tool, params, opts) do
    with {:ok, timeout} <- positive(opts, :timeout, @default_timeout, @max_timeout),
         {:ok, correlation_id} <- correlation_id(opts),
         {:ok, session_id} <- text(opts, :session_id, fn -> "" end, 256),
         {:ok, metadata} <- metadata(Keyword.get(opts, :metadata, %{})),
         {:ok, worker_id} <- text(opts, :worker_id, fn -> nil end, 128),
         {:ok, metadata} <- traceparent(opts, metadata) do
      {:ok,
       %{
         channel: channel,
         tool: tool,
         params: params,
         meta: %{
           node: node(),
           worker_id: worker_id,
           rpc_method: "ExecuteTool",
           correlation_id: correlation_id
         },
         nif_opts: %{
           correlation_id: correlation_id,
           timeout_ms: timeout,
           session_id: session_id,
           metadata: metadata
         },
         timeout: timeout
       }}
    end
  end

  defp run(call) do
    :telemetry.execute(
      Naming.grpc_event([:call, :start]),
      %{system_time: System.system_time()},
      call.meta
    )

    started = System.monotonic_time()
    ref = make_ref()

    result =
      try do
        case Native.tool_call(call.channel, call.tool, call.params, call.nif_opts, self(), ref) do
          :ok -> await(ref, call.timeout)
          {:error, _} = error -> error
        end
      rescue
        # A channel that is not ours, say: the start still gets its end.
        e in ArgumentError -> {:error, {:invalid_argument, Exception.message(e)}}
      end

    emit_end(result, started, call.meta)
    strip(result)
  end

  defp text?(value, max),
    do: is_binary(value) and byte_size(value) <= max and String.valid?(value)

  defp text(opts, key, default, max) do
    case Keyword.fetch(opts, key) do
      :error -> {:ok, default.()}
      {:ok, v} -> if text?(v, max), do: {:ok, v}, else: {:error, {:invalid_option, {key, v}}}
    end
  end

  # Longer ids make the worker drop every event of the call
  # (correlation_id_too_long): refused here, before anything is sent.
  defp correlation_id(opts) do
    case Keyword.fetch(opts, :correlation_id) do
      {:ok, id} when is_binary(id) and byte_size(id) > @max_correlation_id ->
        {:error, {:correlation_id_too_long, @max_correlation_id}}

      _ ->
        text(opts, :correlation_id, &new_correlation_id/0, @max_correlation_id)
    end
  end

  defp positive(opts, key, default, max) do
    case Keyword.get(opts, key, default) do
      n when is_integer(n) and n > 0 and n <= max -> {:ok, n}
      other -> {:error, {:invalid_option, {key, other}}}
    end
  end

  defp metadata(map) when is_map(map) and map_size(map) <= 64 do
    if Enum.all?(map, fn {k, v} -> text?(k, 256) and text?(v, 4096) end),
      do: {:ok, map},
      else: {:error, {:invalid_option, {:metadata, "a map of strings"}}}
  end

  defp metadata(_), do: {:error, {:invalid_option, {:metadata, "a map of at most 64 strings"}}}

  # Sent in the request metadata, where the worker looks for it.
  defp traceparent(opts, metadata) do
    case Keyword.fetch(opts, :traceparent) do
      :error ->
        {:ok, metadata}

      {:ok, tp} when is_binary(tp) and byte_size(tp) == 55 ->
        if tp =~ ~r/\A[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\z/,
          do: {:ok, Map.put(metadata, "traceparent", tp)},
          else: {:error, {:invalid_option, {:traceparent, tp}}}

      {:ok, other} ->
        {:error, {:invalid_option, {:traceparent, other}}}
    end
  end

  # The NIF applies `timeout` itself and always answers; the extra second
  # only guards against a reply that never comes.
  defp await(ref, timeout) do
    receive do
      {:snakepit_tool_result, ^ref, result} -> result
    after
      timeout + 1_000 -> {:error, :timeout}
    end
  end

  defp emit_end({:ok, _result, info}, started, meta) do
    duration = System.monotonic_time() - started
    exec = System.convert_time_unit(info.execution_time_ms, :millisecond, :native)

    :telemetry.execute(
      Naming.grpc_event([:call, :stop]),
      %{duration: duration, network_time: max(duration - exec, 0)},
      Map.put(meta, :grpc_status, "OK")
    )
  end

  defp emit_end({:error, reason}, started, meta) do
    # error_type tells a tool that failed (the RPC succeeded: status "OK")
    # from a failed RPC, a timeout or arguments the NIF refused.
    {status, type, message} =
      case reason do
        {:grpc_error, code, msg} -> {code, :grpc_error, msg}
        {:tool_error, msg, _info} -> {"OK", :tool_error, msg}
        :timeout -> {"DeadlineExceeded", :timeout, "no reply in time"}
        {:invalid_params, msg} -> {"Unknown", :invalid_params, msg}
        other -> {"Unknown", :internal, inspect(other)}
      end

    :telemetry.execute(
      Naming.grpc_event([:call, :exception]),
      %{duration: System.monotonic_time() - started},
      Map.merge(meta, %{grpc_status: status, error_type: type, error_message: message})
    )
  end

  defp strip({:ok, result, _info}), do: {:ok, result}
  defp strip({:error, {:tool_error, message, _info}}), do: {:error, {:tool_error, message}}
  defp strip(error), do: error

  @doc "A new random correlation id (16 hex characters)."
  @spec new_correlation_id() :: String.t()
  def new_correlation_id, do: Base.encode16(:rand.bytes(8), case: :lower)
end
