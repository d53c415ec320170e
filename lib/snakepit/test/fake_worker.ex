defmodule Snakepit.Test.FakeWorker do
  @moduledoc """
  A fake worker for your application's tests: it speaks the worker's gRPC
  protocol from inside the VM (served by the NIF on 127.0.0.1; no Python),
  streams the events you give it, honours the controls
  (`GrpcStream.toggle/2`, `update_sampling/3`, `update_filter/2`) as a
  Python worker does, reports its running totals, and can be killed.

      test "my handler counts result sizes" do
        ref = Snakepit.Test.Telemetry.forward([[:snakepit, :python, :tool, :result_size]])
        on_exit(fn -> Snakepit.Test.Telemetry.detach(ref) end)

        {:ok, fake} = Snakepit.Test.FakeWorker.start(worker_id: "fake-1")
        on_exit(fn -> Snakepit.Test.FakeWorker.stop(fake) end)
        :ok = Snakepit.Test.FakeWorker.emit(fake, "tool.result_size", %{bytes: 42}, %{tool: "predict"})

        assert_receive {:telemetry, [:snakepit, :python, :tool, :result_size], %{bytes: 42},
                        %{tool: "predict", worker_id: "fake-1"}}
      end

  Events go through the same path as a real worker's (the NIF validates
  them, `GrpcStream` dispatches them), so a malformed one is rejected and
  counted in `GrpcStream.stats/1`.
  """

  alias Snakepit.Telemetry.{GrpcStream, Native}

  @enforce_keys [:worker_id, :endpoint, :handle]
  defstruct [:worker_id, :endpoint, :handle]

  @type t :: %__MODULE__{worker_id: String.t() | nil, endpoint: String.t(), handle: reference}

  @doc """
  Starts a fake worker and registers its stream with `GrpcStream`, owned by
  the calling process (the stream ends when it exits).

  ## Options

    * `:worker_id` - required unless `register: false`
    * `:pool_name` - default `:fake`
    * `:register` - `false` only starts the server (`endpoint` is in the
      struct; register it yourself)
    * `:stream` - options for `GrpcStream.register_worker/3`
  """
  @spec start(keyword) :: {:ok, t} | {:error, term}
  def start(opts \\ []) do
    with true <- Keyword.keyword?(opts) || {:error, {:invalid_options, opts}},
         {:ok, {port, handle}} <- Native.fake_worker_start() do
      fake = %__MODULE__{
        worker_id: opts[:worker_id],
        endpoint: "127.0.0.1:#{port}",
        handle: handle
      }

      if Keyword.get(opts, :register, true) do
        register(fake, opts)
      else
        {:ok, fake}
      end
    end
  end

  defp register(fake, opts) do
    ctx = %{worker_id: opts[:worker_id], pool_name: Keyword.get(opts, :pool_name, :fake)}

    stream =
      Keyword.merge(
        [owner: self(), backoff_initial_ms: 20, backoff_max_ms: 200],
        Keyword.get(opts, :stream, [])
      )

    case GrpcStream.register_worker(fake.endpoint, ctx, stream) do
      {:ok, _} ->
        {:ok, fake}

      error ->
        Native.fake_worker_kill(fake.handle)
        error
    end
  end

  @doc """
  Emits one event as the worker's Python code would: `name` is the Python
  name (`"tool.result_size"`, `"python.call.stop"`, or an application
  event's); measurements are numbers, metadata values are turned into text.
  Options: `:correlation_id`. `{:error, :killed}` after `kill/1`.
  """
  @spec emit(t, String.t(), map, map, keyword) :: :ok | {:error, term}
  def emit(%__MODULE__{handle: handle}, name, measurements \\ %{}, metadata \\ %{}, opts \\ [])
      when is_binary(name) and is_map(measurements) and is_map(metadata) and is_list(opts) do
    with {:ok, m} <- measurements(measurements),
         {:ok, md} <- metadata(metadata),
         cid when is_nil(cid) or is_binary(cid) <- opts[:correlation_id] do
      Native.fake_worker_emit(handle, name, m, md, cid)
    else
      {:error, _} = error -> error
      other -> {:error, {:invalid_option, {:correlation_id, other}}}
    end
  end

  @doc """
  What the fake worker has in force and counted: `%{enabled, sampling_rate,
  emitted, dropped, sampled_out, filtered_out, disabled, queued, streams,
  killed}`.
  """
  @spec state(t) :: map
  def state(%__MODULE__{handle: handle}), do: Native.fake_worker_state(handle)

  @doc "Kills it, as a crashed worker: its listener closes and its streams end."
  @spec kill(t) :: :ok
  def kill(%__MODULE__{handle: handle}), do: Native.fake_worker_kill(handle)

  @doc "Unregisters its stream and kills it."
  @spec stop(t) :: :ok
  def stop(%__MODULE__{} = fake) do
    if fake.worker_id, do: GrpcStream.unregister_worker(fake.worker_id)
    kill(fake)
  end

  defp measurements(map) do
    if Enum.all?(map, fn {k, v} -> key?(k) and is_number(v) end),
      do: {:ok, Map.new(map, fn {k, v} -> {to_string(k), v} end)},
      else: {:error, {:invalid_measurements, map}}
  end

  defp metadata(map) do
    if Enum.all?(map, fn {k, _} -> key?(k) end),
      do: {:ok, Map.new(map, fn {k, v} -> {to_string(k), text(v)} end)},
      else: {:error, {:invalid_metadata, map}}
  end

  defp key?(k), do: (is_atom(k) and not is_nil(k)) or (is_binary(k) and String.valid?(k))

  defp text(v) when is_binary(v), do: v
  defp text(v) when is_atom(v) or is_number(v), do: to_string(v)
  defp text(v), do: inspect(v)
end
