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

  alias Snakepit.Telemetry.{Naming, Native}

  @type channel :: reference
  @default_timeout 30_000

  @doc "Opens a (lazily connected) channel to `host:port`."
  @spec connect(String.t(), keyword) :: {:ok, channel} | {:error, term}
  def connect(endpoint, opts \\ []) when is_binary(endpoint) do
    Native.channel_open(endpoint, Keyword.get(opts, :connect_timeout_ms, 5_000))
  end

  @doc """
  Calls `tool` with `params` (a map) on the worker behind `channel`.

  ## Options

    * `:correlation_id` - defaults to a new random id
    * `:timeout` - milliseconds (default #{@default_timeout})
    * `:session_id`, `:metadata` (map of strings)
    * `:worker_id` - put on the `[:snakepit, :grpc, :call, ...]` events

  Returns `{:ok, result}` or `{:error, reason}` where reason is
  `{:tool_error, message}`, `{:grpc_error, code, message}`, `:timeout` or
  `{:invalid_params, text}`.
  """
  @spec execute_tool(channel, String.t(), map, keyword) :: {:ok, term} | {:error, term}
  def execute_tool(channel, tool, params, opts \\ []) when is_binary(tool) and is_map(params) do
    correlation_id = Keyword.get_lazy(opts, :correlation_id, &new_correlation_id/0)
    timeout = Keyword.get(opts, :timeout, @default_timeout)

    meta = %{
      node: node(),
      worker_id: opts[:worker_id],
      rpc_method: "ExecuteTool",
      correlation_id: correlation_id
    }

    call_opts = %{
      correlation_id: correlation_id,
      timeout_ms: timeout,
      session_id: Keyword.get(opts, :session_id, ""),
      metadata: Keyword.get(opts, :metadata, %{})
    }

    :telemetry.execute(
      Naming.grpc_event([:call, :start]),
      %{system_time: System.system_time()},
      meta
    )

    started = System.monotonic_time()
    ref = make_ref()

    result =
      case Native.tool_call(channel, tool, params, call_opts, self(), ref) do
        :ok -> await(ref, timeout)
        {:error, _} = error -> error
      end

    emit_end(result, started, meta)
    strip(result)
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
    {status, message} =
      case reason do
        {:grpc_error, code, msg} -> {code, msg}
        {:tool_error, msg, _info} -> {"OK", msg}
        other -> {"Unknown", inspect(other)}
      end

    :telemetry.execute(
      Naming.grpc_event([:call, :exception]),
      %{duration: System.monotonic_time() - started},
      Map.merge(meta, %{grpc_status: status, error_message: message})
    )
  end

  defp strip({:ok, result, _info}), do: {:ok, result}
  defp strip({:error, {:tool_error, message, _info}}), do: {:error, {:tool_error, message}}
  defp strip(error), do: error

  @doc "A new random correlation id (16 hex characters)."
  @spec new_correlation_id() :: String.t()
  def new_correlation_id, do: Base.encode16(:rand.bytes(8), case: :lower)
end
